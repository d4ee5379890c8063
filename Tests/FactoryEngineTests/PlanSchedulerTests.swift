import FactoryEngine
import FactoryModel
import Foundation
import Testing

/// Records what the scheduler starts, and lets the test finish each action when it chooses.
actor SchedulerProbe {
    private(set) var inFlight = 0
    private(set) var maxInFlight = 0
    private(set) var started: [String] = []
    private var gates: [String: CheckedContinuation<Bool, Never>] = [:]

    func begin(_ id: String) async -> Bool {
        started.append(id)
        inFlight += 1
        maxInFlight = max(maxInFlight, inFlight)
        let succeeded = await withCheckedContinuation { gates[id] = $0 }
        inFlight -= 1
        return succeeded
    }

    /// Finishes a started action with the given outcome.
    func finish(_ id: String, succeeded: Bool = true) -> Bool {
        guard let gate = gates.removeValue(forKey: id) else { return false }
        gate.resume(returning: succeeded)
        return true
    }

    var waiting: [String] { gates.keys.sorted() }
}

@Suite("PlanScheduler: one bounded scheduler over the plan's dependencies")
struct PlanSchedulerTests {
    static let container = ContainerID(account: StorageAccountID(subscriptionId: "s", resourceGroup: "rg", name: "acct"), name: "c")

    static func action(_ id: String, _ stage: Stage, after: [String] = []) -> PlanAction {
        PlanAction(id: id, stage: stage, operation: .deleteTemporaryBlob(BlobID(container: container, name: id)), reason: "test", dependsOn: after)
    }

    /// Runs the scheduler in the background; the test drives it through the probe.
    static func start(_ actions: [PlanAction], limit: Int, barriers: Bool, probe: SchedulerProbe)
        -> Task<[ActionResult], Error> {
        Task {
            try await PlanScheduler(maxConcurrentJobs: limit, stageBarriers: barriers).run(
                actions, progress: { _ in },
                skip: { action, dependency, ran in
                    ActionResult(action: action, outcome: .skipped, message: "skipped: \(dependency) \(ran ? "did not succeed" : "was not run")",
                                 start: Date(), end: Date())
                },
                perform: { action in
                    let ok = await probe.begin(action.id)
                    return ActionResult(action: action, outcome: ok ? .succeeded : .failed, message: nil, start: Date(), end: Date())
                })
        }
    }

    /// Yields until the probe shows exactly these actions waiting to be finished.
    /// Bounded, so a scheduler bug fails the test instead of spinning forever.
    static func waitFor(_ probe: SchedulerProbe, _ ids: [String], sourceLocation: SourceLocation = #_sourceLocation) async {
        for _ in 0..<200_000 {
            if await probe.waiting == ids.sorted() { return }
            await Task.yield()
        }
        Issue.record("the scheduler never had exactly \(ids) in flight; it has \(await probe.waiting)", sourceLocation: sourceLocation)
    }

    @Test("never more than the limit in flight, and the limit is reached")
    func boundedAndSaturated() async throws {
        let probe = SchedulerProbe()
        let actions = (0..<10).map { Self.action("d\($0)", .distribute) }
        let task = Self.start(actions, limit: 3, barriers: true, probe: probe)
        var finished = 0
        while finished < 10 {
            let waiting = await probe.waiting
            if waiting.isEmpty { await Task.yield(); continue }
            #expect(waiting.count <= 3)
            if finished <= 7 { await Self.waitFor(probe, Array(waiting.prefix(3))) }
            _ = await probe.finish(waiting[0])
            finished += 1
        }
        let results = try await task.value
        #expect(results.count == 10)
        #expect(await probe.maxInFlight == 3)
    }

    @Test("without barriers an action starts as soon as its own dependency succeeded, while other builds still run")
    func followsDependencies() async throws {
        let probe = SchedulerProbe()
        let actions = [Self.action("build/slow", .build), Self.action("build/fast", .build),
                       Self.action("snap/fast", .snap, after: ["build/fast"]), Self.action("distribute/fast", .distribute, after: ["snap/fast"])]
        let task = Self.start(actions, limit: 4, barriers: false, probe: probe)
        await Self.waitFor(probe, ["build/fast", "build/slow"])
        _ = await probe.finish("build/fast")
        await Self.waitFor(probe, ["build/slow", "snap/fast"])
        _ = await probe.finish("snap/fast")
        await Self.waitFor(probe, ["build/slow", "distribute/fast"])
        _ = await probe.finish("distribute/fast")
        _ = await probe.finish("build/slow")
        let results = try await task.value
        #expect(results.map(\.action.id) == ["build/fast", "snap/fast", "distribute/fast", "build/slow"])
    }

    @Test("with barriers no action of a later stage starts before the earlier stages are done")
    func barriersHold() async throws {
        let probe = SchedulerProbe()
        let actions = [Self.action("build/slow", .build), Self.action("build/fast", .build),
                       Self.action("snap/fast", .snap, after: ["build/fast"])]
        let task = Self.start(actions, limit: 4, barriers: true, probe: probe)
        await Self.waitFor(probe, ["build/fast", "build/slow"])
        _ = await probe.finish("build/fast")
        for _ in 0..<200 { await Task.yield() }
        #expect(await probe.waiting == ["build/slow"], "the snap waited for the build stage")
        _ = await probe.finish("build/slow")
        await Self.waitFor(probe, ["snap/fast"])
        _ = await probe.finish("snap/fast")
        #expect(try await task.value.count == 3)
    }

    @Test("a failed dependency skips what follows it, transitively; a dependency outside the execution skips too")
    func failuresSkip() async throws {
        let probe = SchedulerProbe()
        let actions = [Self.action("build/a", .build), Self.action("snap/a", .snap, after: ["build/a"]),
                       Self.action("distribute/a", .distribute, after: ["snap/a"]), Self.action("retire/x", .retire, after: ["distribute/unselected"])]
        let task = Self.start(actions, limit: 2, barriers: false, probe: probe)
        await Self.waitFor(probe, ["build/a"])
        _ = await probe.finish("build/a", succeeded: false)
        let results = try await task.value
        let byID = Dictionary(uniqueKeysWithValues: results.map { ($0.action.id, $0) })
        #expect(byID["build/a"]?.outcome == .failed)
        #expect(byID["snap/a"]?.outcome == .skipped)
        #expect(byID["distribute/a"]?.message == "skipped: snap/a did not succeed")
        #expect(byID["retire/x"]?.message == "skipped: distribute/unselected was not run")
        #expect(await probe.started == ["build/a"])
    }

    @Test("once images are being captured, builds hold at most half the slots, so distributions are not starved")
    func buildsShareTheSlots() async throws {
        let probe = SchedulerProbe()
        let builds = ["a", "b", "c", "d"].map { Self.action("build/\($0)", .build) }
        let actions = builds + [Self.action("snap/a", .snap, after: ["build/a"]), Self.action("distribute/a", .distribute, after: ["snap/a"])]
        let task = Self.start(actions, limit: 4, barriers: false, probe: probe)
        // Nothing else to do yet: every slot builds.
        await Self.waitFor(probe, ["build/a", "build/b", "build/c", "build/d"])
        _ = await probe.finish("build/a")
        await Self.waitFor(probe, ["build/b", "build/c", "build/d", "snap/a"])
        _ = await probe.finish("snap/a")
        // An image is captured: the distribution gets the free slot although three builds run.
        await Self.waitFor(probe, ["build/b", "build/c", "build/d", "distribute/a"])
        for id in ["distribute/a", "build/b", "build/c", "build/d"] { _ = await probe.finish(id) }
        #expect(try await task.value.count == 6)
    }

    @Test("with nothing else waiting for a slot, builds may use every slot")
    func buildsUseIdleSlots() async throws {
        let probe = SchedulerProbe()
        let actions = [Self.action("build/0", .build), Self.action("build/1", .build),
                       Self.action("distribute/0", .distribute, after: ["build/0"]), Self.action("distribute/1", .distribute, after: ["build/1"])]
        let task = Self.start(actions, limit: 2, barriers: false, probe: probe)
        await Self.waitFor(probe, ["build/0", "build/1"])
        for id in ["build/0", "build/1"] { _ = await probe.finish(id) }
        await Self.waitFor(probe, ["distribute/0", "distribute/1"])
        for id in ["distribute/0", "distribute/1"] { _ = await probe.finish(id) }
        #expect(try await task.value.count == 4)
        #expect(await probe.maxInFlight == 2)
    }

    @Test("an ordering edge (`after`) waits for an action whatever its outcome, and never skips")
    func afterWaitsButNeverSkips() async throws {
        let probe = SchedulerProbe()
        let copy = Self.action("distribute/lab", .distribute)
        var container = Self.action("cleanup/container/lab", .cleanup)
        container.after = [copy.id]
        let task = Self.start([container, copy], limit: 2, barriers: false, probe: probe)
        await Self.waitFor(probe, ["distribute/lab"])
        for _ in 0..<200 { await Task.yield() }
        #expect(await probe.waiting == ["distribute/lab"], "the container waits for the copy into it")
        _ = await probe.finish("distribute/lab", succeeded: false)
        await Self.waitFor(probe, ["cleanup/container/lab"])
        _ = await probe.finish("cleanup/container/lab")
        let results = try await task.value
        #expect(results.map(\.outcome) == [.failed, .succeeded])
    }

    @Test("actions in a dependency cycle are reported skipped, never dropped or hung on")
    func cycles() async throws {
        let probe = SchedulerProbe()
        let actions = [Self.action("a", .cleanup, after: ["b"]), Self.action("b", .cleanup, after: ["a"])]
        let results = try await Self.start(actions, limit: 2, barriers: true, probe: probe).value
        #expect(results.map(\.outcome) == [.skipped, .skipped])
    }

    @Test("cancellation reaches every job in flight")
    func cancellation() async throws {
        let actions = (0..<4).map { Self.action("d\($0)", .distribute) }
        let clock = ManualClock()
        let task = Task {
            try await PlanScheduler(maxConcurrentJobs: 4).run(
                actions, progress: { _ in }, skip: { a, _, _ in ActionResult(action: a, outcome: .skipped, message: nil, start: Date(), end: Date()) },
                perform: { action in
                    // Each job waits a long time on the clock, as a poll would.
                    let ok = (try? await clock.sleep(seconds: 3600)) != nil
                    return ActionResult(action: action, outcome: ok ? .succeeded : .failed, message: ok ? nil : "canceled", start: Date(), end: Date())
                })
        }
        await clock.waitForSleepers(4)
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(clock.sleeperCount == 0, "every job saw the cancellation")
    }
}

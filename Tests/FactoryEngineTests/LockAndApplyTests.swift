import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import Testing

/// One run at a time per factory, and apply of a saved plan only on the state it was made from.
@Suite("FactoryLock and applying saved plans")
struct LockAndApplyTests {
    static func fixture() -> FactoryFixture { ExecutorTests.fixture() }

    static func lock(_ factory: LocalFactory, leaseSeconds: Double) async throws -> FactoryLock {
        FactoryLock(client: CloudClient(backend: factory.cloud, clock: factory.clock), container: try await factory.container(of: "ImageFactory"),
                    leaseSeconds: leaseSeconds)
    }

    @Test("while one run holds the factory, another is refused with a message naming the holder")
    func busyFactoryIsRefused() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let a = try await Self.lock(factory, leaseSeconds: 60)
        let leaseA = try await a.acquire(runID: "A")

        let b = try await Self.lock(factory, leaseSeconds: 60)
        let error = try await #require(throws: FactoryError.self) { try await b.acquire(runID: "B") }
        #expect(error.description.contains("run A"), "\(error.description)")
        #expect(error.description.contains("busy"))
        #expect(error.exitCode == .busy)

        // A whole run is refused too, before it changes anything.
        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        #expect(plan.hasWrites)
        let writes = try factory.operations().filter { $0.write && $0.result == "ok" }.count
        let runError = try await #require(throws: FactoryError.self) {
            try await runner.execute(plan, runID: "C", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
        }
        #expect(runError.description.contains("run A"))
        #expect(try factory.operations().filter { $0.write && $0.result == "ok" }.count == writes, "a refused run changes nothing")
        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)

        // Released, the factory is free at once.
        await a.release(leaseA)
        let leaseB = try await b.acquire(runID: "B")
        await b.release(leaseB)
    }

    @Test("a lock left by a killed run expires after its lease, and a new run can take it")
    func leaseExpires() async throws {
        // The cloud's time is moved by hand: the lease expires without the test waiting for it.
        let clock = ManualClock()
        let factory = try await LocalFactory(Self.fixture(), clock: clock)
        let killed = try await Self.lock(factory, leaseSeconds: 60)
        _ = try await killed.acquire(runID: "A")  // and never released
        let next = try await Self.lock(factory, leaseSeconds: 60)
        clock.advance(by: 59)
        let error = try await #require(throws: FactoryError.self) { try await next.acquire(runID: "B") }
        #expect(error.description.contains("run A"))

        clock.advance(by: 2)
        _ = try await next.acquire(runID: "B")
        let holder = try await factory.observer.getBlob(BlobID(container: factory.container(of: "ImageFactory"), name: FactoryStateBlobs.holder))
        #expect(String(decoding: holder, as: UTF8.self).contains("\"runID\":\"B\""))
    }

    /// Rewrites the holder record as if another process had taken the lock.
    static func pretendHolder(_ factory: LocalFactory, lock: FactoryLock, pid: Int32, host: String = ProcessInfo.processInfo.hostName,
                              space: String? = ProcessSpace.current) async throws {
        let blob = BlobID(container: try await factory.container(of: "ImageFactory"), name: FactoryStateBlobs.holder)
        var holder = try JSONDecoder.iso8601.decode(LockHolder.self, from: try await factory.observer.getBlob(blob))
        holder.pid = pid
        holder.host = host
        holder.processSpace = space
        _ = try await factory.observer.putBlob(blob, data: try JSONEncoder().encodeISO(holder), metadata: [:])
    }

    /// The pid of a process that has exited (and been reaped).
    static func deadPID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    @Test("a lock whose holder is provably gone (this host, no such process) is taken over at once; a live or remote holder's is not")
    func deadHolderIsTakenOver() async throws {
        let clock = ManualClock()
        let factory = try await LocalFactory(Self.fixture(), clock: clock)
        let killed = try await Self.lock(factory, leaseSeconds: 60)
        _ = try await killed.acquire(runID: "A")

        // A holder on another host, or a live process here: busy, until the lease expires.
        try await Self.pretendHolder(factory, lock: killed, pid: try Self.deadPID(), host: "another-host")
        let next = try await Self.lock(factory, leaseSeconds: 60)
        await #expect(throws: FactoryError.self) { _ = try await next.acquire(runID: "B") }
        try await Self.pretendHolder(factory, lock: killed, pid: getppid())
        await #expect(throws: FactoryError.self) { _ = try await next.acquire(runID: "B") }
        // The same host name in another container or after a reboot: its pids mean nothing here.
        try await Self.pretendHolder(factory, lock: killed, pid: try Self.deadPID(), space: "another-boot/pid:[4026531836]")
        await #expect(throws: FactoryError.self) { _ = try await next.acquire(runID: "B") }
        #expect(ProcessSpace.current != nil, "this Linux machine has a boot id and a pid namespace")

        // The same holder, gone: taken over with no time passing.
        try await Self.pretendHolder(factory, lock: killed, pid: try Self.deadPID())
        let lease = try await next.acquire(runID: "B")
        let holder = try JSONDecoder.iso8601.decode(LockHolder.self, from: try await factory.observer.getBlob(
            BlobID(container: try await factory.container(of: "ImageFactory"), name: FactoryStateBlobs.holder)))
        #expect(holder.runID == "B")
        #expect(holder.leaseID == lease.leaseID)
        await next.release(lease)
    }

    @Test("--lock-timeout waits for a busy factory on the clock, takes it when freed, and gives up at the deadline")
    func lockTimeout() async throws {
        let clock = ManualClock()
        let factory = try await LocalFactory(Self.fixture(), clock: clock)
        let holder = try await Self.lock(factory, leaseSeconds: 60)
        let held = try await holder.acquire(runID: "A")
        let waiter = try await Self.lock(factory, leaseSeconds: 60)
        let waiting = Task { try await waiter.acquire(runID: "B", timeout: 30) }
        await clock.waitForSleepers(1)
        await holder.release(held)
        clock.advance(by: 5)
        let lease = try await waiting.value
        #expect(lease.runID == "B")

        let late = try await Self.lock(factory, leaseSeconds: 60)
        let givingUp = Task { try await late.acquire(runID: "C", timeout: 12) }
        for _ in 0..<3 {
            await clock.waitForSleepers(1)
            clock.advance(by: 5)
        }
        let error = await #expect(throws: FactoryError.self) { _ = try await givingUp.value }
        #expect(error?.exitCode == .busy)
        #expect(error?.description.contains("run B") == true)
    }

    @Test("unlock breaks a lock whatever its holder, and a run can take the factory at once")
    func breakLock() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let a = try await Self.lock(factory, leaseSeconds: 60)
        _ = try await a.acquire(runID: "A")
        let holder = try await a.breakLock()
        #expect(holder?.runID == "A")
        let b = try await Self.lock(factory, leaseSeconds: 60)
        _ = try await b.acquire(runID: "B")
    }

    @Test("withLock releases the factory when its body ends, even by throwing")
    func withLockReleases() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let a = try await Self.lock(factory, leaseSeconds: 60)
        let value = try await a.withLock(runID: "A") { 42 }
        #expect(value == 42)
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await a.withLock(runID: "A2") { () async throws -> Int in throw Boom() } }
        let b = try await Self.lock(factory, leaseSeconds: 60)
        _ = try await b.acquire(runID: "B")
    }

    @Test("apply of a saved plan whose inventory changed since is refused, and nothing is done")
    func stalePlanIsRefused() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        #expect(plan.hasWrites)
        try await factory.addImageByHand("Handmade", lab: "DevLab", tags: [:])

        let error = try await #require(throws: FactoryError.self) {
            try await runner.execute(plan, runID: "apply-1", stages: Set(Stage.allCases), requireSamePlanBasis: true, events: { _ in })
        }
        #expect(error.exitCode == .invalidInput)
        #expect(error.description.contains("changed since the plan was made"), "\(error.description)")
        #expect(!(try factory.operations()).contains { $0.run == "apply-1" })
        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)
        #expect(try await factory.records().isEmpty)

        // The lock was released: a fresh plan applies.
        let (fresh, _) = try await runner.plan()
        let summary = try await runner.execute(fresh, runID: "apply-2", stages: Set(Stage.allCases), requireSamePlanBasis: true, events: { _ in })
        #expect(summary.failed.isEmpty)
    }

    @Test("apply of a saved plan made at another commit is refused")
    func planFromAnotherCommitIsRefused() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let runner = factory.runner()
        var (plan, _) = try await runner.plan()
        plan.commit = "feedface00000000000000000000000000000000"
        let error = try await #require(throws: FactoryError.self) {
            try await runner.execute(plan, runID: "apply-1", stages: Set(Stage.allCases), requireSamePlanBasis: true, events: { _ in })
        }
        #expect(error.exitCode == .invalidInput)
        #expect(error.description.contains("feedface"))
    }

    @Test("apply of an unchanged saved plan runs it as planned, run after run")
    func unchangedPlanApplies() async throws {
        var fixture = Self.fixture()
        let factory = try await LocalFactory(fixture)
        for revision in 1...2 {
            fixture.templates["Windows/Datacenter.json"] = FactoryFixture.template(notes: "Datacenter, revision \(revision)")
            factory.configuration = try fixture.load()
            let runner = factory.runner()
            let (plan, _) = try await runner.plan()
            let saved = try Plan.decode(plan.encoded())
            let summary = try await runner.execute(saved, runID: "apply-\(revision)", stages: Set(Stage.allCases), requireSamePlanBasis: true,
                                                   events: { _ in })
            #expect(summary.failed.isEmpty, "apply \(revision)")
            #expect(summary.results.map(\.action.id).sorted() == plan.ids.sorted(), "apply \(revision) ran the saved plan's actions")
            #expect(summary.results.count == plan.actions.count)
        }
    }

    @Test("only the requested stages run")
    func stagesSubset() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let runner = factory.runner()
        let (plan, _) = try await runner.plan()
        let summary = try await runner.execute(plan, runID: "build-only", stages: [.build, .snap], requireSamePlanBasis: false, events: { _ in })
        #expect(Set(summary.results.map(\.action.stage)) == [.build, .snap])
        #expect(summary.failed.isEmpty)
        #expect(try await factory.records().count == 3)
        #expect(try await factory.images("DevLab").isEmpty)
        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).count == 3, "cleanup did not run")

        // The next run resumes: captured images are distributed, the VMs deleted, nothing is built again.
        let (next, _) = try await runner.plan()
        #expect(next.actions(.buildVM).isEmpty && next.actions(.captureImage).isEmpty)
        let rest = try await runner.execute(next, runID: "rest", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
        #expect(rest.failed.isEmpty)
        #expect(try await factory.images("DevLab").count == 3)
        #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)
    }
}

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

extension JSONEncoder {
    func encodeISO<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(value)
    }
}

import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import Testing

/// A factory split into shards: each shard plans its own targets (trees of copies included), the
/// build job the factory's own work, and their locks let disjoint shards run at once while a whole
/// run and any shard exclude each other.
@Suite("Shards: scoped plans, runs and locks")
struct ShardTests {
    static let subA = "aaaaaaaa-1111-4111-8111-111111111111"
    static let subB = "bbbbbbbb-2222-4222-8222-222222222222"
    static let subC = "cccccccc-3333-4333-8333-333333333333"

    /// Seven labs in three subscriptions, most in the factory's region (so copies fan out as trees
    /// within a shard), one elsewhere; two templates.
    static func fixture() -> FactoryFixture {
        func lab(_ name: String, _ sub: String, _ paths: [String], in location: String = "westeurope") -> FactoryFixture.LabEntry {
            FactoryFixture.LabEntry(subscriptionId: sub, resourceGroup: "rg-\(name.lowercased())", labName: name, location: location, imagePaths: paths)
        }
        return FactoryFixture(labs: [
            lab("A1", subA, ["Linux/Ubuntu.json", "Windows/Datacenter.json"]), lab("A2", subA, ["Linux/Ubuntu.json"]),
            lab("A3", subA, ["Linux/Ubuntu.json"]), lab("A4", subA, ["Linux/Ubuntu.json", "Windows/Datacenter.json"]),
            lab("B1", subB, ["Linux/Ubuntu.json"]), lab("B2", subB, ["Linux/Ubuntu.json", "Windows/Datacenter.json"], in: "northeurope"),
            lab("C1", subC, ["Windows/Datacenter.json"]),
        ], templates: [
            "Linux/Ubuntu.json": FactoryFixture.template(osType: .linux, notes: "Ubuntu server"),
            "Windows/Datacenter.json": FactoryFixture.template(notes: "Windows Server Datacenter"),
        ])
    }

    static func scope(_ configuration: FactoryConfiguration, _ index: Int, of count: Int) -> RunScope {
        .shard(ShardAssignment(configuration: configuration, count: count).scope(ShardSelection(index: index, count: count)))
    }

    static func plan(_ configuration: FactoryConfiguration, _ inventory: Inventory, scope: RunScope) -> Plan {
        var options = PlanOptions(now: Observed.now)
        options.scope = scope
        return FactoryPlanner.plan(configuration.restricted(to: scope), inventory: inventory.restricted(to: scope, configuration: configuration), options: options)
    }

    /// The inventory after the build job: every template has its record, the labs are empty, an
    /// unknown VM sits in the factory lab and an old record waits for retirement.
    static func builtInventory(_ configuration: FactoryConfiguration) -> Inventory {
        var inventory = Observed.inventory(configuration)
        for template in configuration.templates {
            inventory.addRecord(Observed.record(template, name: template.imageName + "-Nov-21-2026", at: Observed.daysAgo(1)))
            inventory.addRecord(Observed.record(template, name: template.imageName + "-Nov-1-2026", at: Observed.daysAgo(21), sha: "old"))
            inventory.addRecord(Observed.record(template, name: template.imageName + "-Oct-1-2026", at: Observed.daysAgo(52), sha: "older"))
        }
        inventory.factoryVMs.append(Observed.vm("stray01", in: inventory.factory, tags: [:]))
        return inventory
    }

    @Test("the shards' plans and the build job's together are the whole plan: no action twice, none missing, factory work only in the build job")
    func shardPlansPartitionTheWholePlan() throws {
        let configuration = try Self.fixture().load()
        let inventory = Self.builtInventory(configuration)
        let whole = Self.plan(configuration, inventory, scope: .whole)
        #expect(whole.actions(.retireRecord).count == 2, "not vacuous: the factory has records to retire")
        #expect(whole.actions(.distributeImage).count == 10)
        let factory = Self.plan(configuration, inventory, scope: .factory)
        #expect(factory.actions.allSatisfy { $0.labID?.key == inventory.factory.id.key || $0.kind == .retireRecord }, "\(factory.ids)")
        #expect(factory.diagnostics.contains { $0.message.contains("stray01") })
        for count in [1, 2, 3, 4] {
            var ids = factory.ids
            for index in 1...count {
                let shard = Self.plan(configuration, inventory, scope: Self.scope(configuration, index, of: count))
                let owned = Set(configuration.restricted(to: Self.scope(configuration, index, of: count)).labs.map(\.labName))
                #expect(shard.actions.allSatisfy { $0.labID.map { owned.contains($0.name) } == true }, "N=\(count) shard \(index): \(shard.ids)")
                #expect(shard.actions.allSatisfy { $0.stage != .build && $0.stage != .snap && !$0.deletesImage || $0.kind == .retireImage })
                #expect(!shard.diagnostics.contains { $0.message.contains("stray01") }, "the factory's problems are the build job's to report")
                #expect(shard.scope == Self.scope(configuration, index, of: count))
                ids += shard.ids
            }
            #expect(ids.count == Set(ids).count, "N=\(count): an action in two plans")
            #expect(Set(ids) == Set(whole.ids), "N=\(count): \(Set(whole.ids).symmetricDifference(ids))")
        }
    }

    @Test("a shard's copy trees stay inside the shard: every copy reads a lab of its own shard or the factory's VHD")
    func treesStayInsideTheShard() throws {
        let configuration = try Self.fixture().load()
        let inventory = Self.builtInventory(configuration)
        var readsFromLabs = 0
        for count in [1, 2, 3] {
            for index in 1...count {
                let plan = Self.plan(configuration, inventory, scope: Self.scope(configuration, index, of: count))
                let copies = plan.actions.filter { $0.kind == .distributeImage }
                let destinations = Set(copies.compactMap { action -> BlobID? in
                    if case .distributeImage(let spec) = action.operation { return spec.destination }
                    return nil
                })
                let ids = Set(plan.ids)
                for action in copies {
                    guard case .distributeImage(let spec) = action.operation else { continue }
                    for source in spec.sourceCandidates ?? [spec.source] where source != spec.source {
                        #expect(destinations.contains(source), "N=\(count) shard \(index): \(action.id) reads \(source), outside its shard")
                        readsFromLabs += 1
                    }
                    #expect(spec.sourceCandidates?.last ?? spec.source == spec.source, "the factory's VHD is the last resort")
                    #expect(action.after.allSatisfy(ids.contains), "N=\(count) shard \(index): \(action.id) waits for \(action.after)")
                    if spec.keepCopy == true {
                        #expect(copies.contains { other in
                            if case .distributeImage(let s) = other.operation { return s.sourceCandidates?.contains(spec.destination) == true }
                            return false
                        }, "a kept copy is read by a copy of the same shard")
                    }
                }
            }
        }
        #expect(readsFromLabs > 0, "not vacuous: some copies read other labs' copies")
    }

    @Test("a shard before the build job leaves out what waits for captures, names the templates, and plans no container for it")
    func shardBeforeTheBuildJob() throws {
        let configuration = try Self.fixture().load()
        var inventory = Self.builtInventory(configuration)
        // The Windows template changed since its record: the build job has not captured it yet.
        let windows = try #require(configuration.template(at: "Windows/Datacenter.json"))
        inventory.records.removeAll { $0.imagePath == windows.path && $0.templateBlobSha == windows.blobSha }
        let c1 = try #require(inventory.labs.firstIndex { $0.lab?.id.name == "C1" })
        inventory.labs[c1].images = [Observed.image(windows.imageName + "-Nov-1-2026", in: inventory.labs[c1].lab!, path: windows.path, createdAt: Observed.daysAgo(21)),
                                     Observed.image(windows.imageName + "-Oct-1-2026", in: inventory.labs[c1].lab!, path: windows.path, createdAt: Observed.daysAgo(52))]
        let whole = Self.plan(configuration, inventory, scope: .whole)
        #expect(whole.actions.contains { $0.id.hasPrefix("retire/image/C1/") }, "not vacuous: the whole plan retires C1's old image after the new one")
        let scope = try #require(Self.scope(configuration, 1, of: 1).shard)
        let plan = Self.plan(configuration, inventory, scope: .shard(scope))
        #expect(!plan.actions.contains { $0.imagePath == windows.path }, "\(plan.ids)")
        #expect(!plan.actions.contains { $0.id == "cleanup/container/\(inventory.labs[c1].lab!.storageAccount.name)" }, "C1 gets no copy: no container to delete")
        #expect(plan.actions(.distributeImage).count == 6, "the Linux image is delivered: \(plan.ids)")
        let warning = try #require(plan.diagnostics.first { $0.severity == .warning && $0.message.contains("not captured yet") })
        #expect(warning.message.contains("Windows/Datacenter.json") && warning.message.contains("retire"), "\(warning.message)")
        #expect(warning.hint?.contains("--factory-only") == true)
    }

    // MARK: Running shards on the local cloud

    @Test("the build job and N shards at once on one local cloud leave exactly what one whole run leaves")
    func shardedRunEqualsWholeRun() async throws {
        let reference = try await LocalFactory(Self.fixture())
        #expect(try await reference.run("whole").succeeded)
        func state(_ factory: LocalFactory) async throws -> [String: [String]] {
            var result: [String: [String]] = [:]
            for lab in factory.configuration.labs {
                result[lab.labName] = try await factory.images(lab.labName).map { "\(ExecutorTests.bases([$0.id.name])[0]) \($0.tags[FactoryTag.imagePath] ?? "?")" }.sorted()
                #expect(try await factory.blobs(lab.labName).isEmpty, "\(lab.labName) keeps temporary copies")
            }
            return result
        }
        let expected = try await state(reference)
        #expect(expected.values.reduce(0) { $0 + $1.count } == 10)

        for count in [2, 3] {
            let factory = try await LocalFactory(Self.fixture())
            var build = factory.runner()
            build.scope = .factory
            let (buildPlan, _) = try await build.plan()
            #expect(try await build.execute(buildPlan, runID: "build", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in }).succeeded)
            let configuration = factory.configuration
            let base = factory.runner()
            let summaries = try await withThrowingTaskGroup(of: RunSummary.self) { group in
                for index in 1...count {
                    group.addTask {
                        var runner = base
                        runner.scope = Self.scope(configuration, index, of: count)
                        let (plan, _) = try await runner.plan()
                        return try await runner.execute(plan, runID: "shard-\(index)", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let failed = summaries.flatMap(\.failed).map { "\($0.action.id): \($0.message ?? "")" }
            #expect(summaries.count == count && failed.isEmpty, "N=\(count): \(failed)")
            #expect(try await state(factory) == expected, "N=\(count)")
            #expect(try await factory.observer.listVirtualMachines(lab: factory.factoryLab).isEmpty)
            // Every shard added its labs to the targets record, none lost another's.
            let targets = try await factory.observer.getBlob(BlobID(container: try await factory.container(of: "ImageFactory"), name: FactoryStateBlobs.targets))
            let record = try JSONDecoder.iso8601.decode(TargetsRecord.self, from: targets)
            #expect(Set(record.labs.map(\.name)) == Set(configuration.labs.map(\.labName)), "N=\(count): \(record.labs.map(\.name))")
            // Each shard wrote only in its own labs (and the factory's lock and state blobs).
            for index in 1...count {
                let owned = Set(configuration.restricted(to: Self.scope(configuration, index, of: count)).labs.map(\.labName))
                let writes = try factory.operations().filter { $0.run == "shard-\(index)" && $0.write }
                #expect(!writes.isEmpty)
                #expect(writes.allSatisfy { $0.lab.map(owned.contains) ?? true }, "N=\(count) shard \(index) wrote in \(Set(writes.compactMap(\.lab)))")
            }
            // Nothing left to do for anyone.
            for scope in [RunScope.whole, .factory] + (1...count).map({ Self.scope(configuration, $0, of: count) }) {
                var runner = factory.runner()
                runner.scope = scope
                #expect(try await runner.plan().0.actions.isEmpty, "\(scope)")
            }
        }
    }

    // MARK: Locks

    static func lock(_ factory: LocalFactory, _ scope: RunScope, leaseSeconds: Double = 60) async throws -> FactoryLock {
        FactoryLock(client: CloudClient(backend: factory.cloud, clock: factory.clock), container: try await factory.container(of: "ImageFactory"),
                    leaseSeconds: leaseSeconds, scope: LockScope(scope))
    }

    static func targets(_ names: [String]) -> RunScope {
        .shard(ShardScope(index: 1, count: 2, targets: names.map { name in
            ShardTarget(kind: .lab, name: name, key: "\(subA)/\(name.lowercased())", subscription: subA, jobs: 1)
        }))
    }

    @Test("shards with disjoint targets hold the factory at once; overlapping ones exclude each other, all or nothing")
    func shardsExcludeByTarget() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let one = try await Self.lock(factory, Self.targets(["A1", "A2"]))
        let two = try await Self.lock(factory, Self.targets(["B1", "C1"]))
        let leaseOne = try await one.acquire(runID: "one")
        let leaseTwo = try await two.acquire(runID: "two")
        #expect(leaseOne.blobs.count == 2 && leaseTwo.blobs.count == 2)

        // Another N covering A0 and A2: refused, naming who holds A2; and it keeps nothing (A0, taken first, is free after).
        let other = try await Self.lock(factory, Self.targets(["A0", "A2"]))
        let error = try await #require(throws: FactoryError.self) { try await other.acquire(runID: "other") }
        #expect(error.exitCode == .busy)
        #expect(error.description.contains("shard 1/2, run one") && error.description.contains("holds A2"), "\(error.description)")
        let three = try await Self.lock(factory, Self.targets(["A0"]))
        let leaseThree = try await three.acquire(runID: "three")

        // Released, A2 is free at once.
        await one.release(leaseOne)
        let leaseOther = try await Self.lock(factory, Self.targets(["A2"])).acquire(runID: "other")
        #expect(leaseOther.blobs.count == 1)
        await two.release(leaseTwo)
        await three.release(leaseThree)
    }

    @Test("a whole run and a shard exclude each other, whichever comes first, and the refused one keeps no lease")
    func wholeAndShardExclude() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let shard = try await Self.lock(factory, Self.targets(["A1"]))
        let whole = try await Self.lock(factory, .whole)
        let held = try await shard.acquire(runID: "shard")
        let refused = try await #require(throws: FactoryError.self) { try await whole.acquire(runID: "whole") }
        #expect(refused.exitCode == .busy && refused.description.contains("run shard") && refused.description.contains("lab a1"), "\(refused.description)")
        // The refused whole run released its own lease: another shard still gets in.
        let second = try await Self.lock(factory, Self.targets(["B1"])).acquire(runID: "second")
        await shard.release(held)
        await (try await Self.lock(factory, Self.targets(["B1"]))).release(second)

        // The other way round: a whole run holds the factory, a shard is refused and keeps none of its targets.
        let wholeLease = try await whole.acquire(runID: "whole")
        let shardRefused = try await #require(throws: FactoryError.self) { try await shard.acquire(runID: "late") }
        #expect(shardRefused.exitCode == .busy && shardRefused.description.contains("run whole") && shardRefused.description.contains("whole factory"),
                "\(shardRefused.description)")
        let factoryContainer = try await factory.container(of: "ImageFactory")
        let holders = try await factory.observer.listBlobs(container: factoryContainer, prefix: FactoryStateBlobs.shardHoldersPrefix)
        #expect(holders.isEmpty, "the refused shard removed its holder record: \(holders.map(\.id.name))")
        await whole.release(wholeLease)
        let after = try await shard.acquire(runID: "after")
        await shard.release(after)
    }

    /// A lock whose Blob calls pass through `gate`, on the same local cloud.
    static func gatedLock(_ factory: LocalFactory, _ scope: RunScope, gate: CallGate) async throws -> FactoryLock {
        FactoryLock(client: CloudClient(backend: GatedBackend(base: factory.cloud, gate: gate), clock: factory.clock),
                    container: try await factory.container(of: "ImageFactory"), leaseSeconds: 60, scope: LockScope(scope))
    }

    /// Where each side is held: the shard once its leases are taken, before it checks the factory's
    /// lock; the whole run once its lease is taken, before it checks the targets.
    static let shardCheck = ("putBlob", FactoryStateBlobs.lock)
    static let wholeCheck = ("listBlobs", FactoryStateBlobs.shardTargetLocksPrefix)

    @Test("take, then check: whichever of a whole run and a shard checks second backs off, in either order")
    func takeThenCheck() async throws {
        let factory = try await LocalFactory(Self.fixture())
        // The shard holds its targets and waits to check; the whole run comes, sees the shard and backs off.
        let shardGate = CallGate(Self.shardCheck.0, Self.shardCheck.1)
        let shard = try await Self.gatedLock(factory, Self.targets(["A1", "B1"]), gate: shardGate)
        let shardTask = Task { try await shard.acquire(runID: "shard") }
        await shardGate.reached()
        let whole = try await Self.lock(factory, .whole)
        let refused = try await #require(throws: FactoryError.self) { try await whole.acquire(runID: "whole") }
        #expect(refused.exitCode == .busy && refused.description.contains("run shard"), "\(refused.description)")
        await shardGate.open()
        let shardLease = try await shardTask.value
        await shard.release(shardLease)

        // The whole run holds its lease and waits to check; the shard comes, sees it and backs off, keeping nothing.
        let wholeGate = CallGate(Self.wholeCheck.0, Self.wholeCheck.1)
        let gatedWhole = try await Self.gatedLock(factory, .whole, gate: wholeGate)
        let wholeTask = Task { try await gatedWhole.acquire(runID: "whole-2") }
        await wholeGate.reached()
        let late = try await Self.lock(factory, Self.targets(["A1", "B1"]))
        let lateError = try await #require(throws: FactoryError.self) { try await late.acquire(runID: "late") }
        #expect(lateError.exitCode == .busy && lateError.description.contains("whole factory"), "\(lateError.description)")
        await wholeGate.open()
        let wholeLease = try await wholeTask.value
        await gatedWhole.release(wholeLease)
    }

    @Test("take, then check: both taken and both about to check, exactly one proceeds, whichever checks first", arguments: [true, false])
    func bothInFlight(shardChecksFirst: Bool) async throws {
        let factory = try await LocalFactory(Self.fixture())
        let shardGate = CallGate(Self.shardCheck.0, Self.shardCheck.1)
        let wholeGate = CallGate(Self.wholeCheck.0, Self.wholeCheck.1)
        let shard = try await Self.gatedLock(factory, Self.targets(["A1"]), gate: shardGate)
        let whole = try await Self.gatedLock(factory, .whole, gate: wholeGate)
        let shardTask = Task { try? await shard.acquire(runID: "shard") }
        let wholeTask = Task { try? await whole.acquire(runID: "whole") }
        // Both hold their own leases now.
        await shardGate.reached()
        await wholeGate.reached()
        let first = shardChecksFirst ? shardGate : wholeGate
        let second = shardChecksFirst ? wholeGate : shardGate
        await first.open()
        let firstLease = await (shardChecksFirst ? shardTask : wholeTask).value
        await second.open()
        let secondLease = await (shardChecksFirst ? wholeTask : shardTask).value
        #expect(firstLease == nil, "the first to check sees the other's lease and backs off")
        #expect(secondLease != nil, "the second finds the first gone and proceeds")
        if let lease = secondLease { await (shardChecksFirst ? whole : shard).release(lease) }
    }

    @Test("a killed shard's targets are taken over at once when it is provably gone, or after its lease otherwise")
    func killedShard() async throws {
        let clock = ManualClock()
        let factory = try await LocalFactory(Self.fixture(), clock: clock)
        let killed = try await Self.lock(factory, Self.targets(["A1", "A2"]))
        let lease = try await killed.acquire(runID: "killed")  // and never released
        let rerun = try await Self.lock(factory, Self.targets(["A1", "A2"]))
        // A live holder (this test process's parent, as if it still ran): busy until the lease expires.
        try await Self.pretendShardHolder(factory, leaseID: lease.leaseID, pid: getppid())
        await #expect(throws: FactoryError.self) { _ = try await rerun.acquire(runID: "rerun") }
        clock.advance(by: 61)
        let afterExpiry = try await rerun.acquire(runID: "rerun")
        await rerun.release(afterExpiry)

        // Killed again: its process is gone, so the rerun (and a whole run) take over without waiting.
        let again = try await killed.acquire(runID: "killed-2")
        try await Self.pretendShardHolder(factory, leaseID: again.leaseID, pid: try LockAndApplyTests.deadPID())
        let whole = try await Self.lock(factory, .whole)
        let wholeLease = try await whole.acquire(runID: "whole")
        await whole.release(wholeLease)
        // The whole run swept the gone shard's lease blobs and holder record.
        let left = try await factory.observer.listBlobs(container: try await factory.container(of: "ImageFactory"), prefix: FactoryStateBlobs.shardLocksPrefix)
        #expect(left.isEmpty, "\(left.map(\.id.name))")
    }

    @Test("unlock breaks every shard's lease too and removes their holder records")
    func unlockBreaksShards() async throws {
        let factory = try await LocalFactory(Self.fixture())
        let shard = try await Self.lock(factory, Self.targets(["A1"]))
        _ = try await shard.acquire(runID: "stuck")
        let holders = try await shard.shardHolders()
        #expect(holders.map(\.runID) == ["stuck"] && holders.first?.shard == "1/2" && holders.first?.targets == ["lab/\(Self.subA)/a1"])
        _ = try await Self.lock(factory, .whole).breakLock()
        #expect(try await shard.shardHolders().isEmpty)
        let lease = try await Self.lock(factory, Self.targets(["A1"])).acquire(runID: "next")
        #expect(lease.blobs.count == 1)
    }

    @Test("a shard renews every target's lease while it runs")
    func shardRenews() async throws {
        let clock = ManualClock()
        let factory = try await LocalFactory(Self.fixture(), clock: clock)
        let shard = try await Self.lock(factory, Self.targets(["A1", "B1"]), leaseSeconds: 30)
        let gate = AsyncGate()
        let running = Task { try await shard.withLock(runID: "long") { await gate.wait(); return 1 } }
        // Three renewals' worth of time: 90 s, three times the lease.
        for _ in 0..<9 {
            await clock.waitForSleepers(1)
            clock.advance(by: 10)
        }
        let other = try await Self.lock(factory, Self.targets(["B1"]))
        await #expect(throws: FactoryError.self) { _ = try await other.acquire(runID: "other") }
        await gate.open()
        #expect(try await running.value == 1)
        let renewals = try factory.operations().filter { $0.kind == "renewLease" && $0.result == "ok" }
        #expect(renewals.count >= 2 * 2, "both targets renewed, more than once: \(renewals.count)")
    }

    /// Rewrites a shard's holder record as if another process had taken its targets.
    static func pretendShardHolder(_ factory: LocalFactory, leaseID: String, pid: Int32) async throws {
        let blob = BlobID(container: try await factory.container(of: "ImageFactory"), name: FactoryStateBlobs.shardHoldersPrefix + leaseID + ".json")
        var holder = try JSONDecoder.iso8601.decode(LockHolder.self, from: try await factory.observer.getBlob(blob))
        holder.pid = pid
        _ = try await factory.observer.putBlob(blob, data: try JSONEncoder().encodeISO(holder), metadata: [:])
    }
}

/// A gate a test opens by hand (no sleeping).
actor AsyncGate {
    private var opened = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if opened { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        opened = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}

extension Inventory {
    /// What `InventoryReader.read(_:scope:)` reads for a scope: its targets' labs and galleries only.
    func restricted(to scope: RunScope, configuration: FactoryConfiguration) -> Inventory {
        let keys = Set(configuration.restricted(to: scope).labs.map(\.key))
        var restricted = self
        restricted.labs = labs.filter { keys.contains($0.key) }
        let galleries = Set(configuration.restricted(to: scope).galleries.map(\.key))
        restricted.galleries = self.galleries.filter { galleries.contains($0.key) }
        if !scope.includesFactoryWork { restricted.removedLabs = [] }
        return restricted
    }
}

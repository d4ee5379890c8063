import FactoryModel
import Foundation

/// The whole factory on one backend: read the inventory, plan, and execute under the lock.
public struct FactoryRunner: Sendable {
    public var client: CloudClient
    public var configuration: FactoryConfiguration
    public var lockSeconds: Double
    /// How long a run waits for a busy factory before giving up (0: not at all).
    public var lockTimeout: Double = 0
    /// Run stage after stage instead of overlapping them (for comparison; see `PlanScheduler`).
    public var stageBarriers = false
    /// Copies fan out as a tree; false plans a star (every copy from the factory), for comparison.
    public var treeCopies = true
    /// The part of the factory `plan` plans for: the whole factory, its own work only
    /// (`--factory-only`), or one shard's targets. `execute` follows the plan's own scope.
    public var scope: RunScope = .whole

    public init(backend: any CloudBackend, configuration: FactoryConfiguration, lockSeconds: Double = 60, clock: any FactoryClock = SystemClock()) {
        self.client = CloudClient(backend: backend, clock: clock)
        self.configuration = configuration
        self.lockSeconds = lockSeconds
    }

    /// The factory's lock, where the factory lab's storage is (for `imagefactory unlock`).
    public func lock() async throws -> FactoryLock {
        let settings = configuration.settings
        let backend = client.backend
        let lab = try await client.call {
            try await backend.getLab(LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab))
        }
        return FactoryLock(client: client, container: ContainerID(account: lab.storageAccount, name: settings.container), leaseSeconds: lockSeconds)
    }

    public func inventory() async throws -> Inventory {
        try await InventoryReader(client: client).read(configuration)
    }

    public func plan(force: Bool = false, retireRemovedLabs: Bool = false, now: Date? = nil) async throws -> (Plan, Inventory) {
        let inventory = try await InventoryReader(client: client).read(configuration, scope: scope)
        var options = PlanOptions(force: force, now: now ?? client.clock.now(), retireRemovedLabs: retireRemovedLabs)
        options.treeCopies = treeCopies
        options.scope = scope
        return (FactoryPlanner.plan(configuration.restricted(to: scope), inventory: inventory, options: options), inventory)
    }

    /// Executes a plan. When `requireFingerprint` is set (apply of a saved plan), the inventory is
    /// read again under the lock and the plan refused if it changed since.
    public func execute(_ plan: Plan, runID: String, stages: Set<Stage>, requireSamePlanBasis: Bool,
                        events: @escaping @Sendable (FactoryEvent) -> Void) async throws -> RunSummary {
        try await execute(plan, runID: runID, filter: PlanFilter(stages: stages), requireSamePlanBasis: requireSamePlanBasis, events: events)
    }

    /// Executes a plan already passed through `filter`. When the cloud changed since planning, the
    /// plan is made again under the lock and passed through the same filter.
    public func execute(_ plan: Plan, runID: String, filter: PlanFilter, requireSamePlanBasis: Bool,
                        events: @escaping @Sendable (FactoryEvent) -> Void) async throws -> RunSummary {
        let stages = filter.stages
        if requireSamePlanBasis, plan.commit != configuration.commit {
            throw FactoryError.invalidInput("The plan was made at commit \(plan.commit ?? "worktree"), but the configuration is now at \(configuration.commit ?? "worktree").",
                                            hint: "Make a new plan with `imagefactory plan --out FILE`, or apply with --ref \(plan.commit ?? "HEAD").")
        }
        if requireSamePlanBasis, let digest = plan.configurationDigest, !configuration.digest.isEmpty, digest != configuration.digest {
            throw FactoryError.invalidInput("The configuration changed since the plan was made (Labs.json, a template or the settings differ).",
                                            hint: "Make a new plan with `imagefactory plan --out FILE` and review it.")
        }
        guard plan.hasWrites else {
            // Nothing to change: no lock, no writes at all.
            events(.runStarted(plan, revised: false))
            return RunSummary(runID: runID, commit: plan.commit, results: [], diagnostics: plan.diagnostics)
        }
        // The plan says what it is for: a shard's plan takes its targets' leases and reads its targets again.
        let scope = plan.scope ?? .whole
        let lock = FactoryLock(client: client, container: plan.factory.container, leaseSeconds: lockSeconds, scope: LockScope(scope))
        let client = self.client
        let configuration = self.configuration
        return try await lock.withLock(runID: runID, timeout: lockTimeout) {
            // Re-read under the lock: another run may have changed the cloud since planning.
            let inventory = try await InventoryReader(client: client).read(configuration, scope: scope)
            var current = plan
            if inventory.fingerprint != plan.inventoryFingerprint {
                if requireSamePlanBasis {
                    throw FactoryError.invalidInput("The cloud changed since the plan was made (inventory fingerprint \(plan.inventoryFingerprint.prefix(12)) is now \(inventory.fingerprint.prefix(12))).",
                                                    hint: "Make a new plan with `imagefactory plan --out FILE` and review it.")
                }
                var options = PlanOptions(force: plan.settings.force, now: client.clock.now(), retireRemovedLabs: plan.settings.retireRemovedLabs ?? false)
                options.treeCopies = treeCopies
                options.scope = scope
                current = filter.apply(to: FactoryPlanner.plan(configuration.restricted(to: scope), inventory: inventory, options: options))
            }
            // Whoever shows progress counts the plan that runs, not the one made before the lock.
            events(.runStarted(current, revised: current != plan))
            let executor = FactoryExecutor(client: client, options: ExecutionOptions(runID: runID, stages: stages, stageBarriers: stageBarriers),
                                           events: events)
            var summary = try await executor.execute(current)
            let problem: Diagnostic?
            if scope.includesFactoryWork {
                problem = await Self.rememberTargets(inventory: inventory, summary: summary, container: current.factory.container,
                                                     client: client, runID: runID)
            } else {
                problem = await Self.addTargets(inventory.labs.compactMap { $0.lab?.id }, container: current.factory.container,
                                                client: client, runID: runID, leaseSeconds: lockSeconds)
            }
            if let problem { summary.diagnostics.append(problem) }
            return summary
        }
    }

    /// A shard adds its labs to the targets record, keeping every lab already in it (the other
    /// shards' and the removed ones, which the build job looks after). Shards finish at once, so the
    /// read, merge and write happen under a short lease on `imagefactory.targets.lock`, taken in turn.
    static func addTargets(_ labs: [LabID], container: ContainerID, client: CloudClient, runID: String, leaseSeconds: Double) async -> Diagnostic? {
        guard !labs.isEmpty else { return nil }  // a shard of galleries only
        let backend = client.backend
        let mutex = BlobID(container: container, name: FactoryStateBlobs.targetsLock)
        let leaseID = UUID().uuidString.lowercased()
        // Azure's shortest lease (15 s) unless the factory's own lock is shorter (the local cloud's quick profiles).
        let duration = min(15, leaseSeconds)
        do {
            // Waits its turn for at most two lease lengths: a shard killed while merging leaves the lease to expire.
            let deadline = client.clock.now().addingTimeInterval(2 * duration + 1)
            while true {
                do {
                    _ = try await client.call { try await backend.acquireLease(mutex, duration: duration, proposedLeaseID: leaseID) }
                    break
                } catch let error as CloudError where error.isNotFound {
                    do {
                        _ = try await client.call { try await backend.putBlob(mutex, data: Data(), metadata: [:]) }
                    } catch let error as CloudError where error.status == 412 {}
                } catch let error as CloudError where error.code == "LeaseAlreadyPresent" {
                    guard client.clock.seconds(until: deadline) > 0 else { throw error }
                    try await client.clock.sleep(seconds: Double.random(in: 0.05...0.25) * max(1, min(duration, 4)))
                }
            }
        } catch {
            return .warning("This shard's labs could not be added to the record of target labs (\(error)); a lab removed from Labs.json later may go unnoticed.",
                            hint: "Run the shard again to add them.")
        }
        var problem: Diagnostic?
        do {
            let previous = try await InventoryReader(client: client).previousTargets(container: container)
            var merged = previous
            var keys = Set(previous.map(\.key))
            for lab in labs where keys.insert(lab.key).inserted { merged.append(lab) }
            if merged.count > previous.count {  // nothing new: nothing to write
                let record = TargetsRecord(labs: merged, runId: runID, updatedAt: client.clock.now())
                let data = try JSONEncoder.iso.encode(record)
                _ = try await client.call { try await backend.putBlob(BlobID(container: container, name: FactoryStateBlobs.targets), data: data, metadata: [:]) }
            }
        } catch {
            problem = .warning("This shard's labs could not be added to the record of target labs (\(error)); a lab removed from Labs.json later may go unnoticed.",
                               hint: "Run the shard again to add them.")
        }
        _ = try? await client.call { try await backend.releaseLease(mutex, leaseID: leaseID) }
        return problem
    }

    /// Writes the labs this run delivered to (the targets record), keeping a removed lab until every
    /// factory image in it has been retired, so that no lab's images are ever forgotten.
    static func rememberTargets(inventory: Inventory, summary: RunSummary, container: ContainerID, client: CloudClient,
                                runID: String) async -> Diagnostic? {
        let retiredImages = Set(summary.results.filter { $0.outcome == .succeeded && $0.action.kind == .retireImage }.compactMap { result -> String? in
            guard case .retireImage(let spec) = result.action.operation else { return nil }
            return spec.image.lab.key + "/" + spec.image.name.lowercased()
        })
        var labs = inventory.labs.compactMap { $0.lab?.id }
        var keys = Set(labs.map(\.key))
        for id in inventory.previousTargets where !keys.contains(id.key) && !inventory.goneTargets.contains(id.key) {
            if let removed = inventory.removedLabs.first(where: { $0.lab?.id.key == id.key }) {
                // Read this run: remembered while any factory image is left in it.
                let left = removed.images.filter { $0.tags[FactoryTag.imagePath] != nil && !retiredImages.contains(id.key + "/" + $0.id.name.lowercased()) }
                if left.isEmpty { continue }
            }
            // Not read this run (no access, a fault, a lab of Labs.json that could not be found): remembered as it was.
            labs.append(id)
            keys.insert(id.key)
        }
        let record = TargetsRecord(labs: labs, runId: runID, updatedAt: client.clock.now())
        let backend = client.backend
        do {
            let data = try JSONEncoder.iso.encode(record)
            _ = try await client.call { try await backend.putBlob(BlobID(container: container, name: FactoryStateBlobs.targets), data: data, metadata: [:]) }
            return nil
        } catch {
            return .warning("The record of this run's target labs could not be written (\(error)); a lab removed from Labs.json later may go unnoticed.",
                            hint: "Run again to write it.")
        }
    }
}

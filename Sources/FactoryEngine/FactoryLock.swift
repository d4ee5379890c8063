import FactoryModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Who holds the factory, written beside the lock so a second run can say so.
public struct LockHolder: Codable, Sendable {
    public var runID: String
    public var host: String
    public var pid: Int32
    public var since: Date
    /// The holder's lease: proof of ownership when a later run takes over from a holder that is
    /// provably gone (releasing a lease needs its id, so a live run's lease can never be taken).
    public var leaseID: String?
    /// The running kernel and process namespace the holder's pid belongs to (`ProcessSpace`):
    /// host names repeat across containers and machines, so a pid proves nothing without it.
    public var processSpace: String?
    /// A shard's holder: which shard (`2/4`).
    public var shard: String?
    /// A shard's holder: the targets it leases (`LockTarget.name`s), all with `leaseID`.
    public var targets: [String]?

    /// "run X on host (pid P) since T", with the shard when it is one.
    public var description: String {
        (shard.map { "shard \($0), " } ?? "") + "run \(runID) on \(host) (pid \(pid)) since \(RecordTimestamp.format(since))"
    }
}

/// Where a pid means something: the kernel's boot id and the pid namespace (Linux). Two processes
/// whose spaces match can check each other's pids; anything else (another machine, another
/// container, a reboot, a system without /proc) cannot, and waits for the lease instead.
public enum ProcessSpace {
    public static let current: String? = {
        guard let boot = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !boot.isEmpty,
              let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid"), !namespace.isEmpty else {
            return nil
        }
        return boot + "/" + namespace
    }()
}

/// A lease the lock holds: the run it belongs to, the GUID Blob storage knows it by, and the blobs
/// it is held on (the factory's lock blob, or one blob per target of a shard).
public struct LockLease: Sendable, Equatable {
    public var runID: String
    /// Blob storage accepts only GUIDs as lease ids; a fresh one per acquisition.
    public var leaseID: String
    public var blobs: [BlobID]
    /// A shard's lease: its holder record goes when it is released.
    public var holderRecord: BlobID?
}

/// One target a shard's lock covers.
public struct LockTarget: Sendable, Equatable {
    /// Unique, lowercased: `lab/<subscription>/<lab>` or `gallery/<subscription>/<group>/<gallery>`; the lease blob's name below the prefix.
    public var name: String
    /// For people: `QALab`, `gallery Contoso.Images`.
    public var label: String

    public init(name: String, label: String) {
        self.name = name
        self.label = label
    }
}

/// What a lock covers.
public enum LockScope: Sendable, Equatable {
    /// The whole factory: the lease on `imagefactory.lock`. Every run but a shard takes it (a full
    /// run, the build job with `--factory-only`, `apply` of such a plan).
    case whole
    /// A shard's targets: one lease on `imagefactory.locks/targets/<target>` each, all with one lease id.
    case targets([LockTarget], shard: String?)

    /// The lock a run of `scope` takes.
    public init(_ scope: RunScope) {
        switch scope {
        case .whole, .factory: self = .whole
        case .shard(let shard):
            self = .targets(shard.targets.map { LockTarget(name: $0.lockName, label: $0.label) }, shard: shard.selection.description)
        }
    }
}

/// One run at a time per factory, or per target: leases on blobs in the factory's storage (Azure's
/// own distributed lock). A lease left by a killed run expires after `leaseSeconds`.
///
/// A run of the whole factory leases `imagefactory.lock`. A shard leases one blob per target it
/// owns, all or nothing, in sorted order; so shards with disjoint targets run at once, and two
/// shards of different N that share a lab exclude each other. A whole run and a shard exclude each
/// other by *taking, then checking*: the whole run takes its lease and then finds no target leased
/// (deleting each free target blob on the way); a shard takes its leases and then finds the
/// factory's lock blob unleased (an empty Put Blob, which a lease refuses with 412). Whichever
/// checks second sees the other's lease and backs off (busy, exit 75), so both can never proceed.
public struct FactoryLock: Sendable {
    public var client: CloudClient
    public var container: ContainerID
    public var leaseSeconds: Double
    public var scope: LockScope

    public init(client: CloudClient, container: ContainerID, leaseSeconds: Double = 60, scope: LockScope = .whole) {
        self.client = client
        self.container = container
        self.leaseSeconds = leaseSeconds
        self.scope = scope
    }

    var clock: any FactoryClock { client.clock }
    var lockBlob: BlobID { BlobID(container: container, name: FactoryStateBlobs.lock) }
    var holderBlob: BlobID { BlobID(container: container, name: FactoryStateBlobs.holder) }
    func targetBlob(_ name: String) -> BlobID { BlobID(container: container, name: FactoryStateBlobs.shardTargetLocksPrefix + name) }
    func holderRecord(_ leaseID: String) -> BlobID { BlobID(container: container, name: FactoryStateBlobs.shardHoldersPrefix + leaseID + ".json") }

    /// Takes the lock, waiting up to `timeout` seconds for a busy factory (as Terraform's
    /// `-lock-timeout`), trying again every few seconds; then throws the busy error naming the holder.
    public func acquire(runID: String, timeout: Double) async throws -> LockLease {
        let deadline = clock.now().addingTimeInterval(timeout)
        while true {
            do {
                return try await acquire(runID: runID)
            } catch let error as FactoryError where error.exitCode == .busy {
                let remaining = clock.seconds(until: deadline)
                guard remaining > 0 else { throw error }
                // A whole run and a shard that refused each other try again at different moments.
                try await clock.sleep(seconds: min(5 - Double.random(in: 0..<1), remaining))
            }
        }
    }

    /// Breaks the lock on purpose (`imagefactory unlock`), whoever holds it: the factory's lease and
    /// every shard's, and removes the holder records. Returns who held the factory's lock, when known.
    public func breakLock() async throws -> LockHolder? {
        let backend = client.backend
        let holder = try? await currentHolder()
        for blob in [lockBlob] + (try await shardTargetBlobs()) {
            do {
                _ = try await client.call { try await backend.breakLease(blob, period: 0) }
            } catch let error as CloudError where error.isNotFound || error.code == "LeaseNotPresentWithLeaseOperation" {}
        }
        for record in [holderBlob] + (try await shardHolderBlobs()) {
            do {
                try await client.call { try await backend.deleteBlob(record) }
            } catch let error as CloudError where error.isNotFound {}
        }
        return holder
    }

    /// Takes the lock or throws a FactoryError naming the holder and since when.
    public func acquire(runID: String) async throws -> LockLease {
        let backend = client.backend
        do {
            try await client.call { try await backend.createContainer(self.container) }
        } catch let error as CloudError where error.code == "ContainerAlreadyExists" {}
        switch scope {
        case .whole:
            let lease = try await acquireWhole(runID: runID)
            do {
                try await checkNoShardHolds()
            } catch {
                await release(lease)
                throw error
            }
            return lease
        case .targets(let targets, let shard):
            let lease = try await acquireTargets(targets, shard: shard, runID: runID)
            do {
                try await checkWholeIsFree()
            } catch {
                await release(lease)
                throw error
            }
            return lease
        }
    }

    /// The factory's lease on `imagefactory.lock`, taken over at once from a holder that is provably gone.
    private func acquireWhole(runID: String) async throws -> LockLease {
        let backend = client.backend
        let lock = lockBlob
        let lease = LockLease(runID: runID, leaseID: UUID().uuidString.lowercased(), blobs: [lock])
        do {
            _ = try await client.call { try await backend.getBlobProperties(lock) }
        } catch let error as CloudError where error.isNotFound {
            do {
                _ = try await client.call { try await backend.putBlob(lock, data: Data(), metadata: [:]) }
            } catch let error as CloudError where error.status == 412 {}  // someone else created and leased it
        }
        do {
            _ = try await client.call { try await backend.acquireLease(lock, duration: self.leaseSeconds, proposedLeaseID: lease.leaseID) }
        } catch let error as CloudError where error.code == "LeaseAlreadyPresent" {
            let holder = try? await currentHolder()
            if let holder, let gone = holder.leaseID, holderIsGone(holder) {
                // The holder ran on this host and its process no longer exists (kill -9, a crash):
                // release its lease with its own id and take the factory now, not after the lease expires.
                // A lease that is not the named holder's (a newer run took it) refuses the release.
                if (try? await client.call({ try await backend.releaseLease(lock, leaseID: gone) })) != nil {
                    do {
                        _ = try await client.call { try await backend.acquireLease(lock, duration: self.leaseSeconds, proposedLeaseID: lease.leaseID) }
                    } catch let error as CloudError where error.code == "LeaseAlreadyPresent" {
                        // Another run took the factory between the release and this acquire: busy, like any other time.
                        throw FactoryError(.busy, "The factory is busy: another run took it over just now.",
                                           hint: "Wait for that run to finish, or use --lock-timeout.")
                    }
                    try await writeHolder(runID: runID, lease: lease)
                    return lease
                }
            }
            throw busy(holder.map(\.description) ?? "another run", holds: "it")
        }
        try await writeHolder(runID: runID, lease: lease)
        return lease
    }

    /// A shard's leases, one per target in sorted order, all with one lease id; all or nothing.
    /// The holder record is written first, so a shard killed at any moment after taking a lease is
    /// provably gone to the next run (which then takes its targets over at once).
    private func acquireTargets(_ targets: [LockTarget], shard: String?, runID: String) async throws -> LockLease {
        let backend = client.backend
        let sorted = targets.sorted { $0.name < $1.name }
        let leaseID = UUID().uuidString.lowercased()
        let lease = LockLease(runID: runID, leaseID: leaseID, blobs: sorted.map { targetBlob($0.name) }, holderRecord: holderRecord(leaseID))
        let holder = LockHolder(runID: runID, host: ProcessInfo.processInfo.hostName, pid: ProcessInfo.processInfo.processIdentifier,
                                since: clock.now(), leaseID: leaseID, processSpace: ProcessSpace.current, shard: shard, targets: sorted.map(\.name))
        let data = try JSONEncoder.iso.encode(holder)
        _ = try await client.call { try await backend.putBlob(self.holderRecord(leaseID), data: data, metadata: [:]) }
        var taken = lease
        taken.blobs = []
        do {
            var holders: [LockHolder]?
            for target in sorted {
                try await acquireTarget(target, leaseID: leaseID, holders: &holders)
                taken.blobs.append(targetBlob(target.name))
            }
        } catch {
            await release(taken)
            throw error
        }
        return lease
    }

    /// One target's lease. A missing lease blob is made (a whole run deletes free ones); a lease
    /// held by a shard that is provably gone is released with its id and taken.
    private func acquireTarget(_ target: LockTarget, leaseID: String, holders: inout [LockHolder]?) async throws {
        let backend = client.backend
        let blob = targetBlob(target.name)
        for _ in 0..<4 {
            do {
                _ = try await client.call { try await backend.acquireLease(blob, duration: self.leaseSeconds, proposedLeaseID: leaseID) }
                return
            } catch let error as CloudError where error.isNotFound {
                do {
                    _ = try await client.call { try await backend.putBlob(blob, data: Data(), metadata: [:]) }
                } catch let error as CloudError where error.status == 412 {}  // leased meanwhile: the next try says by whom
            } catch let error as CloudError where error.code == "LeaseAlreadyPresent" {
                if holders == nil { holders = try await shardHolders() }
                let named = Self.holders(of: target.name, in: holders ?? [], except: leaseID)
                let gone = named.filter(holderIsGone)
                guard !gone.isEmpty else { throw busy(named.first?.description ?? "another shard", holds: target.label) }
                for holder in gone {
                    await takeOver(holder)
                    holders?.removeAll { $0.leaseID == holder.leaseID }
                }
            }
        }
        throw busy("other runs", holds: target.label)
    }

    /// A whole run, holding the factory's lease: no shard may hold a target. Free target blobs are
    /// deleted (a lease refuses the delete with 412, which is how a held one is found); shards
    /// that are provably gone are taken over; then no holder record is current any more.
    private func checkNoShardHolds() async throws {
        let backend = client.backend
        var holders: [LockHolder]?
        for blob in try await shardTargetBlobs() {
            if try await deleteIfFree(blob) { continue }
            if holders == nil { holders = try await shardHolders() }
            let name = String(blob.name.dropFirst(FactoryStateBlobs.shardTargetLocksPrefix.count))
            let named = Self.holders(of: name, in: holders ?? [], except: nil)
            let gone = named.filter(holderIsGone)
            if !gone.isEmpty {
                for holder in gone {
                    await takeOver(holder)
                    holders?.removeAll { $0.leaseID == holder.leaseID }
                }
                if try await deleteIfFree(blob) { continue }
            }
            throw busy(named.first { !holderIsGone($0) }?.description ?? "a shard", holds: Self.label(ofTarget: name))
        }
        for record in try await shardHolderBlobs() {
            do {
                try await client.call { try await backend.deleteBlob(record) }
            } catch let error as CloudError where error.isNotFound {}
        }
    }

    /// A shard, holding its targets' leases: no run may hold the whole factory. An empty Put Blob
    /// on the factory's lock blob succeeds unless it is leased (412); a holder that is provably gone
    /// has its lease released.
    private func checkWholeIsFree() async throws {
        let backend = client.backend
        let lock = lockBlob
        do {
            _ = try await client.call { try await backend.putBlob(lock, data: Data(), metadata: [:]) }
        } catch let error as CloudError where error.status == 412 {
            let holder = try? await currentHolder()
            if let holder, let gone = holder.leaseID, holderIsGone(holder),
               (try? await client.call({ try await backend.releaseLease(lock, leaseID: gone) })) != nil {
                return
            }
            throw busy(holder.map(\.description) ?? "another run", holds: "the whole factory")
        }
    }

    private func busy(_ who: String, holds what: String) -> FactoryError {
        FactoryError(.busy, "The factory is busy: \(who) holds \(what).",
                     hint: "Wait for that run to finish; a lock left by a killed run expires after \(Int(leaseSeconds)) seconds.")
    }

    /// Deletes a lease blob unless it is leased; true when it is gone.
    private func deleteIfFree(_ blob: BlobID) async throws -> Bool {
        let backend = client.backend
        do {
            try await client.call { try await backend.deleteBlob(blob) }
            return true
        } catch let error as CloudError where error.isNotFound {
            return true
        } catch let error as CloudError where error.status == 412 {
            return false
        }
    }

    /// The holder records that name a target, newest first. Several can: a shard killed on another
    /// host leaves its record behind when its lease expires, and the next shard writes its own.
    static func holders(of name: String, in holders: [LockHolder], except leaseID: String?) -> [LockHolder] {
        holders.filter { $0.leaseID != leaseID && $0.targets?.contains(name) == true }.sorted { $0.since > $1.since }
    }

    /// Releases every lease of a shard that is provably gone, with its own lease id, and removes its record.
    private func takeOver(_ holder: LockHolder) async {
        guard let leaseID = holder.leaseID else { return }
        let backend = client.backend
        for name in holder.targets ?? [] {
            let blob = targetBlob(name)
            _ = try? await client.call { try await backend.releaseLease(blob, leaseID: leaseID) }
        }
        let record = holderRecord(leaseID)
        _ = try? await client.call { try await backend.deleteBlob(record) }
    }

    /// "lab/sub/qalab" → "lab qalab", for a target that is not ours (its label is not known here).
    public static func label(ofTarget name: String) -> String {
        let parts = name.split(separator: "/")
        return "\(parts.first ?? "target") \(parts.last ?? "")"
    }

    private func shardTargetBlobs() async throws -> [BlobID] {
        try await list(prefix: FactoryStateBlobs.shardTargetLocksPrefix)
    }

    private func shardHolderBlobs() async throws -> [BlobID] {
        try await list(prefix: FactoryStateBlobs.shardHoldersPrefix)
    }

    private func list(prefix: String) async throws -> [BlobID] {
        let backend = client.backend
        do {
            return try await client.call { try await backend.listBlobs(container: self.container, prefix: prefix) }.map(\.id).sorted { $0.name < $1.name }
        } catch let error as CloudError where error.code == "ContainerNotFound" {
            return []
        }
    }

    /// Who holds the lock, as its holder wrote it.
    public func currentHolder() async throws -> LockHolder {
        let backend = client.backend
        let data = try await client.call { try await backend.getBlob(self.holderBlob) }
        return try JSONDecoder.iso.decode(LockHolder.self, from: data)
    }

    /// The shards that hold (or held until they were killed) targets, as their holder records say.
    public func shardHolders() async throws -> [LockHolder] {
        let backend = client.backend
        var holders: [LockHolder] = []
        for record in try await shardHolderBlobs() {
            do {
                let data = try await client.call { try await backend.getBlob(record) }
                if let holder = try? JSONDecoder.iso.decode(LockHolder.self, from: data) { holders.append(holder) }
            } catch let error as CloudError where error.isNotFound {}  // released meanwhile
        }
        return holders
    }

    /// Whether the holder ran on this host and its process is gone. On another host nothing can be
    /// proven, and a live process (or a reused pid) counts as alive: both wait for the lease instead.
    func holderIsGone(_ holder: LockHolder) -> Bool {
        guard let space = ProcessSpace.current, holder.processSpace == space,
              holder.host == ProcessInfo.processInfo.hostName, holder.pid > 0,
              holder.pid != ProcessInfo.processInfo.processIdentifier else { return false }
        return kill(holder.pid, 0) != 0 && errno == ESRCH
    }

    private func writeHolder(runID: String, lease: LockLease) async throws {
        let backend = client.backend
        let holder = LockHolder(runID: runID, host: ProcessInfo.processInfo.hostName, pid: ProcessInfo.processInfo.processIdentifier,
                                since: clock.now(), leaseID: lease.leaseID, processSpace: ProcessSpace.current)
        let data = try JSONEncoder.iso.encode(holder)
        _ = try await client.call { try await backend.putBlob(self.holderBlob, data: data, metadata: [:]) }
    }

    /// Renews every blob of the lease (a shard's in parallel: one Blob request per target, no ARM request).
    public func renew(_ lease: LockLease) async throws {
        let backend = client.backend
        let client = self.client
        _ = try await BoundedConcurrency.map(lease.blobs, limit: 8) { blob in
            try await client.call { try await backend.renewLease(blob, leaseID: lease.leaseID) }
        }
    }

    /// Releases the lease (and a shard's holder record). Runs even when the run was cancelled
    /// (Ctrl-C), so the next run need not wait.
    public func release(_ lease: LockLease) async {
        let backend = client.backend
        let clock = self.clock
        await Task.detached {
            await withTaskGroup(of: Void.self) { group in
                for blob in lease.blobs {
                    group.addTask {
                        for _ in 0..<3 {
                            do {
                                try await backend.releaseLease(blob, leaseID: lease.leaseID)
                                return
                            } catch let error as CloudError where error.isTransient {
                                try? await clock.sleep(seconds: 0.2)
                            } catch {
                                return
                            }
                        }
                    }
                }
            }
            if let record = lease.holderRecord {
                for _ in 0..<3 {
                    do {
                        try await backend.deleteBlob(record)
                        return
                    } catch let error as CloudError where error.isTransient {
                        try? await clock.sleep(seconds: 0.2)
                    } catch {
                        return
                    }
                }
            }
        }.value
    }

    /// Runs `body` while holding the lock, renewing it every third of the lease. A busy factory is
    /// waited for up to `timeout` seconds.
    public func withLock<T: Sendable>(runID: String, timeout: Double = 0, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let lease = try await acquire(runID: runID, timeout: timeout)
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        do {
                            try await self.clock.sleep(seconds: max(0.05, self.leaseSeconds / 3))
                        } catch { break }
                        do {
                            try await self.renew(lease)
                        } catch is CancellationError {
                            break
                        } catch {
                            // Another run may hold the factory now: stop rather than run side by side.
                            throw FactoryError(.workFailed, "Lost the factory lock (run \(runID)): \(error). The run stopped; run again to finish the work.")
                        }
                    }
                    return nil
                }
                group.addTask { try await body() }
                while let value = try await group.next() {
                    if let value {
                        group.cancelAll()
                        return value
                    }
                }
                throw CancellationError()
            }
            await release(lease)
            return result
        } catch {
            await release(lease)
            throw error
        }
    }
}

extension JSONEncoder {
    static var iso: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

extension JSONDecoder {
    static var iso: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

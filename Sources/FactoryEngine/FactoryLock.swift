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

/// A lease the lock holds: the run it belongs to and the GUID Blob storage knows it by.
public struct LockLease: Sendable, Equatable {
    public var runID: String
    /// Blob storage accepts only GUIDs as lease ids; a fresh one per acquisition.
    public var leaseID: String
}

/// One run at a time per factory: a lease on a blob in the factory's storage (Azure's own
/// distributed lock). A lease left by a killed run expires after `leaseSeconds`.
public struct FactoryLock: Sendable {
    public var client: CloudClient
    public var container: ContainerID
    public var leaseSeconds: Double

    public init(client: CloudClient, container: ContainerID, leaseSeconds: Double = 60) {
        self.client = client
        self.container = container
        self.leaseSeconds = leaseSeconds
    }

    var clock: any FactoryClock { client.clock }
    var lockBlob: BlobID { BlobID(container: container, name: FactoryStateBlobs.lock) }
    var holderBlob: BlobID { BlobID(container: container, name: FactoryStateBlobs.holder) }

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
                try await clock.sleep(seconds: min(5, remaining))
            }
        }
    }

    /// Breaks the lock on purpose (`imagefactory unlock`), whoever holds it, and removes the holder
    /// record. Returns who held it, when that is known.
    public func breakLock() async throws -> LockHolder? {
        let backend = client.backend
        let lock = lockBlob
        let holder = try? await currentHolder()
        do {
            _ = try await client.call { try await backend.breakLease(lock, period: 0) }
        } catch let error as CloudError where error.isNotFound || error.code == "LeaseNotPresentWithLeaseOperation" {}
        do {
            try await client.call { try await backend.deleteBlob(self.holderBlob) }
        } catch let error as CloudError where error.isNotFound {}
        return holder
    }

    /// Takes the lock or throws a FactoryError naming the holder and since when.
    public func acquire(runID: String) async throws -> LockLease {
        let backend = client.backend
        let lock = lockBlob
        let lease = LockLease(runID: runID, leaseID: UUID().uuidString.lowercased())
        do {
            try await client.call { try await backend.createContainer(self.container) }
        } catch let error as CloudError where error.code == "ContainerAlreadyExists" {}
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
            var detail = "another run"
            if let holder {
                detail = "run \(holder.runID) on \(holder.host) (pid \(holder.pid)) since \(RecordTimestamp.format(holder.since))"
            }
            throw FactoryError(.busy, "The factory is busy: \(detail) holds it.",
                               hint: "Wait for that run to finish; a lock left by a killed run expires after \(Int(leaseSeconds)) seconds.")
        }
        try await writeHolder(runID: runID, lease: lease)
        return lease
    }

    /// Who holds the lock, as its holder wrote it.
    public func currentHolder() async throws -> LockHolder {
        let backend = client.backend
        let data = try await client.call { try await backend.getBlob(self.holderBlob) }
        return try JSONDecoder.iso.decode(LockHolder.self, from: data)
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

    public func renew(_ lease: LockLease) async throws {
        let backend = client.backend
        let lock = lockBlob
        try await client.call { try await backend.renewLease(lock, leaseID: lease.leaseID) }
    }

    /// Releases the lease. Runs even when the run was cancelled (Ctrl-C), so the next run need not wait.
    public func release(_ lease: LockLease) async {
        let backend = client.backend
        let lock = lockBlob
        let clock = self.clock
        await Task.detached {
            for _ in 0..<3 {
                do {
                    try await backend.releaseLease(lock, leaseID: lease.leaseID)
                    return
                } catch let error as CloudError where error.isTransient {
                    try? await clock.sleep(seconds: 0.2)
                } catch {
                    return
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

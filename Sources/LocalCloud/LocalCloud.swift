import FactoryModel
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// The embedded local cloud: DevTest Labs, storage, custom images and galleries emulated in a
/// state directory (SQLite through GRDB for records, sparse files for blobs). It enforces
/// Azure's rules with Azure's error codes, takes time like Azure, throttles like ARM, injects
/// seeded faults, and logs every operation to `operations.jsonl`.
///
/// Crash safety: a blob's file is complete on disk before the record that points at it is
/// committed, and a copy counts as complete only from its completion moment on; a deleted
/// record goes first and its file after. Files with no record are swept on open.
public final class LocalCloud: CloudBackend {
    public let stateDirectory: URL
    public let settings: LocalCloudSettings
    let db: DatabasePool
    let faults: FaultInjector
    let log: OperationsLog
    let blobsDirectory: URL
    let imagesDirectory: URL
    /// The emulated service's time: when operations complete, leases expire, replication ends.
    /// Tests pass a `ManualClock` to move it by hand.
    public let clock: any FactoryClock
    /// Told when a request is held at `settings.holdAfter` (the CLI says so on standard error).
    let onHold: (@Sendable (String) -> Void)?

    /// Opens (creating if needed) the local cloud in a state directory.
    public init(stateDirectory: URL, settings: LocalCloudSettings, clock: any FactoryClock = SystemClock(),
                onHold: (@Sendable (String) -> Void)? = nil) throws {
        self.stateDirectory = stateDirectory
        self.settings = settings
        self.clock = clock
        self.onHold = onHold
        blobsDirectory = stateDirectory.appendingPathComponent("blobs")
        imagesDirectory = stateDirectory.appendingPathComponent("images")
        for dir in [stateDirectory, blobsDirectory, imagesDirectory] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        db = try DatabasePool(path: stateDirectory.appendingPathComponent("cloud.sqlite").path, configuration: configuration)
        try db.write { try Database.migrate($0) }
        faults = FaultInjector(settings.faults)
        log = OperationsLog(url: stateDirectory.appendingPathComponent("operations.jsonl"))
        try sweepOrphans()
        sweepDiskOrphans()
    }

    /// Removes files no record points at (left by a process killed between writing a file and committing its record).
    /// Only files older than a minute go, so another process's in-flight write is never touched.
    private func sweepOrphans() throws {
        let referenced: Set<String> = try db.read { db in
            var names = Set<String>()
            for blob in try db.allRecords("blob", as: BlobRecord.self) { names.insert(blob.file) }
            for image in try db.allRecords("image", as: ImageRecord.self) { if let f = image.file { names.insert(f) } }
            for version in try db.allRecords("imageversion", as: ImageVersionRecord.self) { if let f = version.file { names.insert(f) } }
            return names
        }
        let cutoff = Date().addingTimeInterval(-60)
        for dir in [blobsDirectory, imagesDirectory] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [] where !referenced.contains(name) {
                let url = dir.appendingPathComponent(name)
                let modified = (try? url.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast
                if modified < cutoff { try? FileManager.default.removeItem(at: url) }
            }
        }
    }

    /// A blob's bytes as of its record. Another process on the same state directory may replace the
    /// blob between this one reading its record and opening its file (the replaced file goes once
    /// the new record is committed, see `replaceBlob`): the record is then read again, so a reader
    /// sees the old bytes or the new ones, whole, never an error or a part.
    func readBlobFile(_ record: BlobRecord, _ id: BlobID) async throws -> Data {
        var record = record
        for _ in 0..<8 {
            let url = blobsDirectory.appendingPathComponent(record.file)
            do {
                return try Data(contentsOf: url)
            } catch where !FileManager.default.fileExists(atPath: url.path) {
                record = try await db.read { db in try self.blob(db, id) }
                guard record.isComplete(at: clock.now()) else {
                    throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation.")
                }
            }
        }
        return try Data(contentsOf: blobsDirectory.appendingPathComponent(record.file))
    }

    // MARK: The request pipeline

    /// Runs one request: request latency, injected faults, write throttling, the body, and a log
    /// line; then, for tests of interruption, holds the request when it is `settings.holdAfter`.
    func perform<T: Sendable>(_ name: String, kind: OperationKind, write: Bool, subscription: String?, lab: String?, resource: String,
                              _ body: @Sendable () async throws -> T) async throws -> T {
        let value = try await performLogged(name, kind: kind, write: write, subscription: subscription, lab: lab, resource: resource, body)
        if let hold = settings.holdAfter, hold == name {
            onHold?(name)
            try await clock.sleep(seconds: 365 * 86_400)  // until the process is killed or the task cancelled
        }
        return value
    }

    private func performLogged<T: Sendable>(_ name: String, kind: OperationKind, write: Bool, subscription: String?, lab: String?, resource: String,
                                            _ body: @Sendable () async throws -> T) async throws -> T {
        let start = self.clock.now()
        var status = 200
        var result = "ok"
        defer {
            log.append(.init(start: OperationsLog.timestamp(start), end: OperationsLog.timestamp(self.clock.now()), kind: name,
                             subscription: subscription, lab: lab, resource: resource, result: result, status: status, write: write,
                             job: OperationContext.jobID, run: OperationContext.runID, pid: getpid()))
        }
        do {
            if settings.latency.request > 0 { try await clock.sleep(seconds: settings.latency.request) }
            if let rates = faults.rates(kind) {
                if await faults.roll(kind, resource: resource, fault: "timeout", rate: rates.timeout) {
                    try await clock.sleep(seconds: settings.faults.timeoutSeconds)
                    throw CloudError(status: 408, code: "RequestTimeout", message: "The request timed out (injected fault).")
                }
                if await faults.roll(kind, resource: resource, fault: "throttle", rate: rates.throttle) {
                    throw CloudError(status: 429, code: "TooManyRequests", message: "The request is being throttled (injected fault).", retryAfter: 0.05)
                }
                if await faults.roll(kind, resource: resource, fault: "transient", rate: rates.transient) {
                    throw CloudError(status: 503, code: "ServiceUnavailable", message: "The service is temporarily unavailable (injected fault).", retryAfter: 0.05)
                }
            }
            // ARM throttles management-plane writes per subscription; blob data-plane calls are not counted.
            if write, kind != .blobWrite, kind != .copy, let subscription {
                try await takeWriteToken(subscription: subscription.lowercased())
            }
            return try await body()
        } catch let error as CloudError {
            status = error.status
            result = error.code
            throw error
        } catch {
            status = 499
            result = error is CancellationError ? "Canceled" : "\(error)"
            throw error
        }
    }

    /// ARM's bucket is the subscription's, whoever writes: it is kept in the state directory's
    /// database, so several processes on one local cloud (shards of one factory) draw on one bucket.
    private func takeWriteToken(subscription: String) async throws {
        let settings = self.settings.throttle
        guard settings.enabled else { return }
        let now = clock.now()
        try await db.write { db in
            var bucket = try db.record("throttle", subscription, as: WriteThrottle.Bucket.self) ?? WriteThrottle.Bucket(tokens: settings.capacity, at: now)
            // A refusal throws and leaves the bucket as it was: the refill is linear, so the next take computes the same.
            _ = try WriteThrottle.take(&bucket, subscription: subscription, settings: settings, now: now)
            try db.save("throttle", subscription, parent: "", bucket)
        }
    }

    func injected(_ kind: OperationKind, _ resource: String, _ fault: String) async -> Bool {
        guard let rates = faults.rates(kind) else { return false }
        let rate: Double
        switch fault {
        case "copyFailure": rate = rates.copyFailure
        case "artifactFailure": rate = rates.artifactFailure
        case "operationFailure": rate = rates.operationFailure
        default: rate = 0
        }
        return await faults.roll(kind, resource: resource, fault: fault, rate: rate)
    }

    func operation(_ db: Database, completesAt: Date, error: CloudError? = nil) throws -> OperationHandle {
        let id = UUID().uuidString.lowercased()
        try db.save("operation", id, parent: "", OperationRecord(id: id, completesAt: completesAt, error: error))
        return OperationHandle(id: id, retryAfter: max(0, completesAt.timeIntervalSince(self.clock.now())))
    }

    /// ARM's 404 for a resource that does not exist, in its own words.
    static func resourceNotFound(_ type: String, resourceGroup: String) -> CloudError {
        CloudError(status: 404, code: "ResourceNotFound", message: "The Resource '\(type)' under resource group '\(resourceGroup)' was not found.")
    }

    // MARK: Keys

    static func labKey(_ id: LabID) -> String { id.key }
    static func vmKey(_ id: VirtualMachineID) -> String { id.lab.key + "/" + id.name.lowercased() }
    static func containerKey(_ id: ContainerID) -> String { id.account.name.lowercased() + "/" + id.name }
    static func blobKey(_ id: BlobID) -> String { containerKey(id.container) + "/" + id.name }
    static func imageKey(_ id: CustomImageID) -> String { id.lab.key + "/" + id.name.lowercased() }
    static func rgKey(_ subscription: String, _ group: String) -> String { subscription.lowercased() + "/" + group.lowercased() }
    static func galleryKey(_ id: GalleryID) -> String { rgKey(id.subscriptionId, id.resourceGroup) + "/" + id.name.lowercased() }
    static func definitionKey(_ id: GalleryImageDefinitionID) -> String { galleryKey(id.gallery) + "/" + id.name.lowercased() }
    static func versionKey(_ id: GalleryImageVersionID) -> String { definitionKey(id.definition) + "/" + id.version }

    /// A lab's storage account name: lowercase letters and digits, at most 24 characters, unique per lab.
    public static func storageAccountName(for lab: LabID) -> String {
        let stem = String(lab.name.lowercased().filter { $0.isASCII && ($0.isLetter || $0.isNumber) }.prefix(12))
        return "a" + stem + String(format: "%08x", UInt32(truncatingIfNeeded: StableHash.fnv1a(lab.key)))
    }
}

/// MD5 of small in-memory blobs (Content-MD5 on Put Blob).
func Insecure_MD5(_ data: Data) -> [UInt8] {
    var hasher = CryptoMD5()
    hasher.update(data)
    return hasher.finalize()
}

import FactoryModel
import Foundation
import GRDB

// The local cloud's storage provider.
extension LocalCloud {
    func container(_ db: Database, _ id: ContainerID) throws -> ContainerRecord {
        guard let record = try db.record("container", LocalCloud.containerKey(id), as: ContainerRecord.self) else {
            throw CloudError(status: 404, code: "ContainerNotFound", message: "The specified container does not exist.")
        }
        return record
    }

    static func validContainerName(_ name: String) -> Bool {
        (3...63).contains(name.count) && name.allSatisfy { ($0.isLowercase && $0.isASCII) || $0.isNumber || $0 == "-" }
            && !name.hasPrefix("-") && !name.hasSuffix("-") && !name.contains("--")
    }

    /// Storage accounts exist with their labs; a request to an unknown account fails like DNS would.
    func checkAccount(_ db: Database, _ account: StorageAccountID) throws {
        let labs = try db.records("lab", parent: account.subscriptionId.lowercased(), as: LabRecord.self)
        guard labs.contains(where: { $0.storageAccount.name.lowercased() == account.name.lowercased() }) else {
            throw CloudError(status: 404, code: "StorageAccountNotFound", message: "The storage account '\(account.name)' was not found.")
        }
    }

    public func createContainer(_ id: ContainerID) async throws {
        guard LocalCloud.validContainerName(id.name) else {
            throw CloudError(status: 400, code: "InvalidResourceName", message: "The specifed resource name contains invalid characters.")
        }
        try await perform("createContainer", kind: .blobWrite, write: true, subscription: id.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                try self.checkAccount(db, id.account)
                if try db.record("container", LocalCloud.containerKey(id), as: ContainerRecord.self) != nil {
                    throw CloudError(status: 409, code: "ContainerAlreadyExists", message: "The specified container already exists.")
                }
                try db.save("container", LocalCloud.containerKey(id), parent: id.account.name.lowercased(), ContainerRecord(id: id, createdAt: self.clock.now()))
            }
        }
    }

    public func deleteContainer(_ id: ContainerID) async throws {
        let files = try await perform("deleteContainer", kind: .blobWrite, write: true, subscription: id.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db -> [String] in
                _ = try self.container(db, id)
                let blobs = try db.records("blob", parent: LocalCloud.containerKey(id), as: BlobRecord.self)
                for blob in blobs { try db.remove("blob", LocalCloud.blobKey(blob.id)) }
                try db.remove("container", LocalCloud.containerKey(id))
                return blobs.map(\.file)
            }
        }
        for file in files { try? FileManager.default.removeItem(at: blobsDirectory.appendingPathComponent(file)) }
    }

    public func listContainers(account: StorageAccountID) async throws -> [String] {
        try await perform("listContainers", kind: .read, write: false, subscription: account.subscriptionId, lab: nil, resource: account.name) {
            try await self.db.read { db in
                try self.checkAccount(db, account)
                return try db.records("container", parent: account.name.lowercased(), as: ContainerRecord.self).map(\.id.name)
            }
        }
    }

    /// Inserts or replaces a blob record, removing the file of the blob it replaces (after commit).
    func replaceBlob(_ db: Database, _ blob: BlobRecord) throws {
        let key = LocalCloud.blobKey(blob.id)
        if let old = try db.record("blob", key, as: BlobRecord.self), old.file != blob.file {
            let oldURL = blobsDirectory.appendingPathComponent(old.file)
            db.afterNextTransaction { _ in try? FileManager.default.removeItem(at: oldURL) }
        }
        try db.save("blob", key, parent: LocalCloud.containerKey(blob.id.container), blob)
    }

    public func putBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        try await perform("putBlob", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            let file = UUID().uuidString.lowercased()
            let url = self.blobsDirectory.appendingPathComponent(file)
            try await self.db.read { db in _ = try self.container(db, id.container) }
            try data.write(to: url)
            let md5 = Data(Insecure_MD5(data)).base64EncodedString()
            let record = BlobRecord(id: id, file: file, size: Int64(data.count), md5: md5, metadata: metadata, lastModified: self.clock.now(), copy: nil)
            return try await self.commit(file: url) { db in
                _ = try self.container(db, id.container)
                try self.checkNoLease(db, id)
                try self.replaceBlob(db, record)
                return record.properties(at: self.clock.now())
            }
        }
    }

    public func putPageBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        try LocalCloud.checkPageBlobSize(Int64(data.count))
        return try await putPageBlob(id, size: Int64(data.count), md5: Data(Insecure_MD5(data)).base64EncodedString(), metadata: metadata) { url in
            try SparseFile.writePages(data, to: url)
        }
    }

    /// Azure sizes a page blob in whole 512-byte pages.
    static func checkPageBlobSize(_ size: Int64) throws {
        guard size >= 0, size % Int64(PageBlobLayout.pageSize) == 0 else {
            throw CloudError(status: 400, code: "InvalidHeaderValue",
                             message: "The value for one of the HTTP headers is not in the correct format: x-ms-blob-content-length \(size) is not a multiple of 512 (a page blob is made of 512-byte pages).")
        }
    }

    /// Creates or replaces a page blob whose file `write` fills (sparse: only written pages), with
    /// the Content-MD5 the writer set (Azure computes none for a page blob; `x-ms-blob-content-md5` sets it).
    public func putPageBlob(_ id: BlobID, size: Int64, md5: String?, metadata: [String: String],
                            write: @escaping @Sendable (URL) throws -> Void) async throws -> BlobProperties {
        try LocalCloud.checkPageBlobSize(size)
        return try await perform("putPageBlob", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            let file = UUID().uuidString.lowercased() + ".vhd"
            let url = self.blobsDirectory.appendingPathComponent(file)
            try await self.db.read { db in _ = try self.container(db, id.container) }
            try write(url)
            let record = BlobRecord(id: id, type: .pageBlob, file: file, size: size, md5: md5, metadata: metadata, lastModified: self.clock.now(), copy: nil)
            return try await self.commit(file: url) { db in
                _ = try self.container(db, id.container)
                try self.checkNoLease(db, id)
                try self.replaceBlob(db, record)
                return record.properties(at: self.clock.now())
            }
        }
    }

    /// Put Page: writes (or clears) whole pages of a page blob in place. As in Azure the blob's
    /// Content-MD5 stays what its writer set: a page write does not recompute it.
    public func putPages(_ id: BlobID, offset: Int64, data: Data, clear: Bool, length: Int64) async throws {
        let page = Int64(PageBlobLayout.pageSize)
        guard offset % page == 0, length % page == 0, length > 0, length <= Int64(PageBlobLayout.maxPageWrite) else {
            throw CloudError(status: 416, code: "InvalidPageRange", message: "The page range specified is invalid: it must start and end on 512-byte page boundaries and be at most 4 MiB.")
        }
        try await perform("putPages", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard record.blobType == .pageBlob else {
                    throw CloudError(status: 409, code: "InvalidBlobType", message: "The blob type is invalid for this operation: \(id.name) is a block blob.")
                }
                guard offset + length <= record.size else {
                    throw CloudError(status: 416, code: "InvalidPageRange", message: "The page range specified is invalid: it ends past the blob's \(record.size) bytes.")
                }
                guard record.isComplete(at: self.clock.now()) else {
                    throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation.")
                }
                try self.checkNoLease(db, id)
                let handle = try FileHandle(forWritingTo: self.blobsDirectory.appendingPathComponent(record.file))
                defer { try? handle.close() }
                try handle.seek(toOffset: UInt64(offset))
                try handle.write(contentsOf: clear ? Data(count: Int(length)) : data)
                record.lastModified = self.clock.now()
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    /// Azure makes disks, images and gallery versions only from page blobs holding a VHD; anything
    /// else is refused with the error Compute gives for it.
    static func checkImportableVHD(_ blob: BlobRecord, uri: String) throws {
        guard blob.blobType == .pageBlob else {
            throw CloudError(status: 400, code: "BadRequest",
                             message: "Only blobs formatted as VHDs can be imported. The blob '\(uri)' is a block blob; a VHD must be a page blob.")
        }
    }

    func blob(_ db: Database, _ id: BlobID) throws -> BlobRecord {
        guard let record = try db.record("blob", LocalCloud.blobKey(id), as: BlobRecord.self) else {
            _ = try container(db, id.container)
            throw CloudError(status: 404, code: "BlobNotFound", message: "The specified blob does not exist.")
        }
        return record
    }

    public func getBlob(_ id: BlobID) async throws -> Data {
        try await perform("getBlob", kind: .read, write: false, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            let record = try await self.db.read { db in try self.blob(db, id) }
            guard record.isComplete(at: self.clock.now()) else {
                throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation.")
            }
            return try await self.readBlobFile(record, id)  // another process may replace it meanwhile
        }
    }

    public func getBlobProperties(_ id: BlobID) async throws -> BlobProperties {
        try await perform("getBlobProperties", kind: .read, write: false, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.read { db in try self.blob(db, id).properties(at: self.clock.now()) }
        }
    }

    public func listBlobs(container: ContainerID, prefix: String?) async throws -> [BlobProperties] {
        try await perform("listBlobs", kind: .read, write: false, subscription: container.account.subscriptionId, lab: nil, resource: container.description) {
            try await self.db.read { db in
                _ = try self.container(db, container)
                let now = self.clock.now()
                return try db.records("blob", parent: LocalCloud.containerKey(container), as: BlobRecord.self)
                    .filter { prefix == nil || $0.id.name.hasPrefix(prefix!) }
                    .map { $0.properties(at: now) }
            }
        }
    }

    public func deleteBlob(_ id: BlobID) async throws {
        let file = try await perform("deleteBlob", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db -> String in
                let record = try self.blob(db, id)
                try self.checkNoLease(db, id)
                try db.remove("blob", LocalCloud.blobKey(id))
                return record.file
            }
        }
        try? FileManager.default.removeItem(at: blobsDirectory.appendingPathComponent(file))
    }

    public func startBlobCopy(from source: BlobID, to destination: BlobID) async throws -> BlobProperties {
        let fails = await injected(.copy, destination.description, "copyFailure")
        return try await perform("startBlobCopy", kind: .copy, write: true, subscription: destination.container.account.subscriptionId, lab: nil, resource: destination.description) {
            let sourceRecord = try await self.db.read { db -> BlobRecord in
                let record = try self.blob(db, source)
                _ = try self.container(db, destination.container)
                return record
            }
            let now = self.clock.now()
            guard sourceRecord.isComplete(at: now) else {
                throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation on the source blob.")
            }
            return try await self.copy(file: self.blobsDirectory.appendingPathComponent(sourceRecord.file), sourceURL: source.url,
                                       type: sourceRecord.blobType, size: sourceRecord.size, md5: sourceRecord.md5, metadata: sourceRecord.metadata,
                                       to: destination, suffix: source.name.hasSuffix(".vhd") ? ".vhd" : "", fails: fails, at: now,
                                       sourceKey: LocalCloud.blobKey(source))
        }
    }

    /// The core of Copy Blob, whatever the source (a blob, a disk's SAS): the destination gets its
    /// own sparse copy of the bytes at once (half of them when the copy is to fail part-way), and
    /// reads as pending until the latency profile says the copy completes. As Azure, a destination
    /// with a copy still pending, or under a lease, cannot be overwritten. The destination is the
    /// source's kind of blob (a disk's is a page blob), and only the source's written pages move.
    func copy(file sourceFile: URL, sourceURL: String, type: BlobType, size: Int64, md5: String?, metadata: [String: String],
              to destination: BlobID, suffix: String, fails: Bool, at now: Date, sourceDiskAccess: String? = nil,
              sourceKey: String? = nil) async throws -> BlobProperties {
        let latency = settings.latency
        let file = UUID().uuidString.lowercased() + suffix
        let url = blobsDirectory.appendingPathComponent(file)
        let dataBytes = SparseFile.allocatedBytes(sourceFile)
        let copied = try SparseFile.copy(sourceFile, to: url, limit: fails ? max(0, dataBytes / 2) : nil)
        let duration = latency.copyBase + (latency.copyBytesPerSecond > 0 ? Double(max(copied, dataBytes)) / latency.copyBytesPerSecond : 0)
        let bandwidth = latency.sourceBytesPerSecond ?? 0
        let shared = bandwidth > 0 ? (sourceKey ?? sourceDiskAccess.map { "disk:\($0)" }) : nil
        let copy = CopyState(status: .pending, completesAt: now.addingTimeInterval(duration), source: sourceURL,
                             failure: fails ? "500 InternalError: the copy failed part-way after \(copied) bytes (injected fault)." : nil,
                             totalBytes: size, sourceDiskAccess: sourceDiskAccess, sourceKey: shared,
                             remainingBytes: shared != nil ? Double(fails ? copied : dataBytes) : nil, sharedSince: shared != nil ? now : nil)
        let initial = BlobRecord(id: destination, type: type == .pageBlob ? .pageBlob : nil, file: file, size: size, md5: md5, metadata: metadata, lastModified: now, copy: copy)
        return try await commit(file: url) { db in
            var record = initial
            if let current = try db.record("blob", LocalCloud.blobKey(destination), as: BlobRecord.self),
               current.properties(at: self.clock.now()).copyStatus == .pending {
                throw CloudError(status: 409, code: "PendingCopyOperation", message: "There is currently a pending copy operation.")
            }
            if let current = try db.record("blob", LocalCloud.blobKey(destination), as: BlobRecord.self), current.blobType != type {
                throw CloudError(status: 409, code: "InvalidBlobType", message: "The blob type is invalid for this operation: the destination is a \(current.blobType.rawValue), the source a \(type.rawValue).")
            }
            try self.checkNoLease(db, destination)
            if let shared {
                // The copies reading this source now share its bandwidth with this one: every end moves.
                let others = try db.allRecords("blob", as: BlobRecord.self).filter {
                    $0.id != destination && $0.copy?.sourceKey == shared && $0.copy?.status == .pending && ($0.copy?.completesAt ?? now) > now
                        && $0.copy?.remainingBytes != nil && $0.copy?.sharedSince != nil
                }
                // They were last scheduled together (at the previous start): advance that schedule to now.
                let since = others.compactMap { $0.copy?.sharedSince }.min() ?? now
                let left = SharedBandwidth.remaining(others.map { $0.copy!.remainingBytes! }, bandwidth: bandwidth, from: since, at: now)
                let ends = SharedBandwidth.ends(remaining: left + [record.copy!.remainingBytes!], bandwidth: bandwidth, from: now)
                for (i, var other) in others.enumerated() {
                    other.copy!.remainingBytes = left[i]
                    other.copy!.sharedSince = now
                    other.copy!.completesAt = ends[i]
                    try self.replaceBlob(db, other)
                }
                record.copy!.completesAt = max(ends[others.count], now.addingTimeInterval(latency.copyBase))
            }
            try self.replaceBlob(db, record)
            return record.properties(at: now)
        }
    }

    /// Commits the record of a file already written in full (crash safety: the file first, then
    /// the record that points to it); the file goes again if the record is not committed.
    func commit<T: Sendable>(file url: URL, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await db.write(body)
        } catch {
            try? FileManager.default.removeItem(at: url)
            throw error
        }
    }

    public func abortBlobCopy(_ id: BlobID) async throws {
        try await perform("abortBlobCopy", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard var copy = record.copy, record.properties(at: self.clock.now()).copyStatus == .pending else {
                    throw CloudError(status: 409, code: "NoPendingCopyOperation", message: "There is currently no pending copy operation.")
                }
                copy.status = .aborted
                record.copy = copy
                record.md5 = nil
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    public func acquireLease(_ id: BlobID, duration: Double, proposedLeaseID: String) async throws -> String {
        // Azure allows 15 to 60 seconds (or infinite); the quicker profiles accept shorter leases so tests need not wait.
        guard duration == -1 || (15...60).contains(duration) || (settings.latency.name != "realistic" && duration > 0) else {
            throw CloudError(status: 400, code: "InvalidHeaderValue", message: "The lease duration must be 15 to 60 seconds, or -1 for infinite.")
        }
        try Self.checkLeaseIDFormat(proposedLeaseID, header: "x-ms-proposed-lease-id")
        return try await perform("acquireLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                let now = self.clock.now()
                if let lease = record.lease, lease.expiresAt > now, lease.id != proposedLeaseID {
                    throw CloudError(status: 409, code: "LeaseAlreadyPresent", message: "There is already a lease present.")
                }
                record.lease = BlobRecord.Lease(id: proposedLeaseID, expiresAt: duration < 0 ? .distantFuture : now.addingTimeInterval(duration), duration: duration)
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
                return proposedLeaseID
            }
        }
    }

    public func renewLease(_ id: BlobID, leaseID: String) async throws {
        try Self.checkLeaseIDFormat(leaseID, header: "x-ms-lease-id")
        try await perform("renewLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard var lease = record.lease, lease.id == leaseID else {
                    throw CloudError(status: 409, code: "LeaseIdMismatchWithLeaseOperation", message: "The lease ID specified did not match the lease ID for the blob.")
                }
                if lease.expiresAt != .distantFuture {
                    lease.expiresAt = self.clock.now().addingTimeInterval(lease.duration ?? 60)
                }
                record.lease = lease
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    public func releaseLease(_ id: BlobID, leaseID: String) async throws {
        try Self.checkLeaseIDFormat(leaseID, header: "x-ms-lease-id")
        try await perform("releaseLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard let lease = record.lease, lease.id == leaseID else {
                    throw CloudError(status: 409, code: "LeaseIdMismatchWithLeaseOperation", message: "The lease ID specified did not match the lease ID for the blob.")
                }
                _ = lease
                record.lease = nil
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }

    /// Blob storage takes only GUIDs as lease ids (`x-ms-proposed-lease-id`, `x-ms-lease-id`) and
    /// answers anything else with 400 InvalidHeaderValue. Checked here with the emulator's own code.
    static func checkLeaseIDFormat(_ value: String, header: String) throws {
        let hex = Set("0123456789abcdefABCDEF")
        let groups = value.split(separator: "-", omittingEmptySubsequences: false)
        let valid = groups.map(\.count) == [8, 4, 4, 4, 12] && groups.allSatisfy { $0.allSatisfy { hex.contains($0) } }
        guard valid else {
            throw CloudError(status: 400, code: "InvalidHeaderValue",
                             message: "The value for one of the HTTP headers is not in the correct format. Header: \(header), value: \(value).")
        }
    }

    /// A blob under an active lease cannot be overwritten or deleted without the lease id.
    func checkNoLease(_ db: Database, _ id: BlobID) throws {
        if let record = try db.record("blob", LocalCloud.blobKey(id), as: BlobRecord.self), let lease = record.lease, lease.expiresAt > self.clock.now() {
            throw CloudError(status: 412, code: "LeaseIdMissing", message: "There is currently a lease on the blob and no lease ID was specified in the request.")
        }
    }
}

import FactoryModel
import Foundation
import GRDB

/// A lab VM's OS disk as the Compute resource provider shows it (`Microsoft.Compute/disks`).
public struct ManagedDiskView: Sendable, Equatable {
    public var vm: VirtualMachineID
    public var osType: OSType
    /// The disk's virtual size (the local cloud's disk size for the OS type).
    public var sizeBytes: Int64
    /// `Attached` (its VM is not deallocated), `Reserved` (attached to a deallocated VM) or
    /// `ActiveSAS` (read access granted), as Azure's `diskState`.
    public var diskState: String
    public var createdAt: Date
    /// The VM's provisioning state (`Creating`, `Succeeded`, `Failed`): the disk exists from the VM's creation on.
    public var provisioningState: String
}

/// Read access to a disk granted by `beginGetAccess`: the SAS names `id` and carries `signature`.
public struct DiskAccessGrant: Sendable, Equatable {
    public var id: String
    public var signature: String
    public var expiresAt: Date
}

/// The exported disk a valid SAS reads: a complete VHD file and its size.
public struct DiskAccessContent: Sendable, Equatable {
    public var file: URL
    public var size: Int64
    /// The Content-MD5 the disk's SAS shows, if any (`LocalCloudSettings.disksHaveContentMD5`).
    public var md5: String?
    public var grantedAt: Date
}

/// One granted access: the disk's content as of the grant, exported to a VHD under `disks/`.
struct DiskAccessRecord: Codable, Sendable {
    var vm: VirtualMachineID
    var id: String
    var signature: String
    /// File name under the state directory's `disks/` folder.
    var file: String
    var size: Int64
    var md5: String
    var grantedAt: Date
    var expiresAt: Date

    func isActive(at now: Date) -> Bool { now < expiresAt }
}

/// Grant and revoke read access to a lab VM's OS disk, as the Compute disks API does
/// (`beginGetAccess` / `endGetAccess`): only a deallocated VM's disk can be read; the grant exports
/// the disk to a VHD that a SAS reads and Copy Blob copies; revoking (or the grant's expiry) makes
/// the SAS fail. While access is granted the VM cannot start, as in Azure.
///
/// Crash safety as for blobs: the VHD is complete before its record commits; a revoked record goes
/// first and its file after; files no record points at are swept (when older than a minute).
extension LocalCloud {
    var disksDirectory: URL { stateDirectory.appendingPathComponent("disks") }

    static func diskAccessKey(_ id: String) -> String { id.lowercased() }

    /// The OS disk of a lab VM.
    public func managedDisk(_ id: VirtualMachineID) async throws -> ManagedDiskView {
        let latency = settings.latency
        return try await perform("getDisk", kind: .read, write: false, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId + "/osdisk") {
            try await self.db.read { db in
                let record = try self.vm(db, id)
                let now = self.clock.now()
                let view = record.view(at: now)
                let active = try db.records("diskaccess", parent: LocalCloud.vmKey(id), as: DiskAccessRecord.self).contains { $0.isActive(at: now) }
                let state = active ? "ActiveSAS" : (view.isDeallocated ? "Reserved" : "Attached")
                return ManagedDiskView(vm: id, osType: record.osType, sizeBytes: latency.diskBytes(record.osType), diskState: state,
                                       createdAt: record.createdAt, provisioningState: view.provisioningState.rawValue)
            }
        }
    }

    /// Grants read access to a deallocated VM's OS disk for `duration` seconds. A running VM's disk
    /// is refused with 409 `OperationNotAllowed`, as Azure refuses disks attached to running VMs.
    /// A second grant replaces the first (whose SAS stops working).
    public func grantDiskAccess(_ id: VirtualMachineID, duration: Double) async throws -> (OperationHandle, DiskAccessGrant) {
        guard duration > 0 else {
            throw CloudError(status: 400, code: "InvalidParameter", message: "durationInSeconds must be a positive number of seconds.")
        }
        let latency = settings.latency
        return try await perform("grantDiskAccess", kind: .export, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId + "/osdisk") {
            let now = self.clock.now()
            let record = try await self.db.read { db in try self.vm(db, id) }
            try Self.checkDiskReadable(record, id, at: now)
            try FileManager.default.createDirectory(at: self.disksDirectory, withIntermediateDirectories: true)
            // The whole VHD is on disk before the record that points at it (crash safety).
            let file = UUID().uuidString.lowercased() + ".vhd"
            let url = self.disksDirectory.appendingPathComponent(file)
            let content = record.diskContent(at: now, size: latency.diskBytes(record.osType))
            try VirtualDisk.write(content, to: url)
            let access = DiskAccessRecord(vm: id, id: UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""),
                                          signature: Self.newSignature(), file: file,
                                          size: content.virtualSize + Int64(VirtualDisk.footerSize), md5: try SparseFile.md5(url),
                                          grantedAt: now, expiresAt: now.addingTimeInterval(duration))
            return try await self.commit(file: url) { db in
                    // Checked again under the write lock: the VM may have been started meanwhile.
                    try Self.checkDiskReadable(try self.vm(db, id), id, at: self.clock.now())
                    try self.removeDiskAccess(db, id)
                    try db.save("diskaccess", LocalCloud.diskAccessKey(access.id), parent: LocalCloud.vmKey(id), access)
                    let handle = try self.operation(db, completesAt: now.addingTimeInterval(latency.copyBase))
                    return (handle, DiskAccessGrant(id: access.id, signature: access.signature, expiresAt: access.expiresAt))
            }
        }
    }

    /// Revokes every access granted to a VM's OS disk (idempotent, as `endGetAccess` is).
    public func revokeDiskAccess(_ id: VirtualMachineID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        return try await perform("revokeDiskAccess", kind: .export, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId + "/osdisk") {
            try await self.db.write { db in
                _ = try self.vm(db, id)
                try self.removeDiskAccess(db, id)
                return try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay))
            }
        }
    }

    /// The currently granted (unexpired) access to a VM's OS disk, if any.
    public func diskAccess(_ id: VirtualMachineID) async throws -> DiskAccessGrant? {
        try await db.read { db in
            let now = self.clock.now()
            return try db.records("diskaccess", parent: LocalCloud.vmKey(id), as: DiskAccessRecord.self)
                .filter { $0.isActive(at: now) }.max { $0.grantedAt < $1.grantedAt }
                .map { DiskAccessGrant(id: $0.id, signature: $0.signature, expiresAt: $0.expiresAt) }
        }
    }

    /// What a SAS reads, when it is still valid: like DNS and the storage front end, a look-up, not
    /// an ARM request. An unknown, revoked or expired access, or a wrong signature, is 403 as in Azure.
    public func diskAccessContent(id: String, signature: String) async throws -> DiskAccessContent {
        let record = try await db.read { db in try db.record("diskaccess", LocalCloud.diskAccessKey(id), as: DiskAccessRecord.self) }
        guard let record, record.isActive(at: self.clock.now()), Self.constantTimeEqual(record.signature, signature) else {
            throw CloudError(status: 403, code: "AuthenticationFailed",
                             message: "Server failed to authenticate the request. The disk's access signature was revoked, has expired or does not match.")
        }
        return DiskAccessContent(file: disksDirectory.appendingPathComponent(record.file), size: record.size,
                                  md5: settings.disksHaveContentMD5 ? record.md5 : nil, grantedAt: record.grantedAt)
    }

    /// Copy Blob whose source is a disk's SAS (how the original factory exported disks: grant,
    /// copy, revoke). The destination gets its own copy of the bytes at once, and the copy reads as
    /// pending until the latency profile says it completes.
    public func startBlobCopy(fromDiskAccess id: String, signature: String, sourceURL: String, to destination: BlobID,
                              faultKind: OperationKind = .copy) async throws -> BlobProperties {
        let fails = await injected(faultKind, destination.description, "copyFailure")
        return try await perform("startBlobCopy", kind: .copy, write: true, subscription: destination.container.account.subscriptionId, lab: nil, resource: destination.description) {
            let source: DiskAccessContent
            do {
                source = try await self.diskAccessContent(id: id, signature: signature)
            } catch let error as CloudError where error.status == 403 {
                throw CloudError(status: 403, code: "CannotVerifyCopySource", message: "This request is not authorized to perform this operation: \(error.message)")
            }
            try await self.db.read { db in _ = try self.container(db, destination.container) }
            return try await self.copy(file: source.file, sourceURL: sourceURL, type: .pageBlob, size: source.size,
                                       md5: source.md5, metadata: [:],
                                       to: destination, suffix: ".vhd", fails: fails, at: self.clock.now(), sourceDiskAccess: id)
        }
    }

    // MARK: Rules shared with the VM lifecycle

    /// A VM whose OS disk has active read access cannot start (Azure: the disk is in `ActiveSAS` state).
    func checkNoActiveDiskAccess(_ db: Database, _ id: VirtualMachineID) throws {
        let now = self.clock.now()
        if try db.records("diskaccess", parent: LocalCloud.vmKey(id), as: DiskAccessRecord.self).contains(where: { $0.isActive(at: now) }) {
            throw CloudError(status: 409, code: "OperationNotAllowed",
                             message: "Operation 'start' is not allowed on VM '\(id.name)' since its OS disk '\(id.name)_OsDisk' is in 'ActiveSAS' state. Revoke the disk's access (endGetAccess) first.")
        }
    }

    /// Removes every access record of a VM; their files go after the transaction commits. A copy
    /// still reading from a removed access fails now, as Azure's does when its source SAS is revoked.
    func removeDiskAccess(_ db: Database, _ id: VirtualMachineID) throws {
        let accesses = try db.records("diskaccess", parent: LocalCloud.vmKey(id), as: DiskAccessRecord.self)
        let revoked = Set(accesses.map(\.id))
        if !revoked.isEmpty {
            let now = clock.now()
            for var blob in try db.allRecords("blob", as: BlobRecord.self)
            where blob.copy?.sourceDiskAccess.map(revoked.contains) == true && blob.properties(at: now).copyStatus == .pending {
                blob.copy?.completesAt = now
                blob.copy?.failure = "500 CannotVerifyCopySource: the copy source's access was revoked before the copy completed."
                try db.save("blob", LocalCloud.blobKey(blob.id), parent: LocalCloud.containerKey(blob.id.container), blob)
            }
        }
        for old in accesses {
            try db.remove("diskaccess", LocalCloud.diskAccessKey(old.id))
            let url = disksDirectory.appendingPathComponent(old.file)
            db.afterNextTransaction { _ in try? FileManager.default.removeItem(at: url) }
        }
    }

    static func checkDiskReadable(_ record: VMRecord, _ id: VirtualMachineID, at now: Date) throws {
        let view = record.view(at: now)
        guard view.provisioningState == "Succeeded" else {
            throw CloudError(status: 409, code: "OperationNotAllowed",
                             message: "Operation 'beginGetAccess' is not allowed on disk '\(id.name)_OsDisk' while its VM is \(view.provisioningState.rawValue.lowercased()).")
        }
        guard view.isDeallocated else {
            throw CloudError(status: 409, code: "OperationNotAllowed",
                             message: "Operation 'beginGetAccess' is not allowed on disk '\(id.name)_OsDisk' since it is attached to VM '\(id.name)', which is \(view.powerState.rawValue.lowercased()). Deallocate the VM first.")
        }
    }

    /// Removes files under `disks/` that no record points at and that are older than a minute (left by
    /// a process killed between writing the VHD and committing its record). Runs once, when the
    /// cloud opens: a synchronous database read must never block the concurrency pool's threads
    /// (on two cores, two jobs doing so while others wait for a reader deadlock).
    func sweepDiskOrphans() {
        guard let referenced = try? db.read({ db in Set(try db.allRecords("diskaccess", as: DiskAccessRecord.self).map(\.file)) }) else { return }
        let cutoff = Date().addingTimeInterval(-60)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: disksDirectory.path)) ?? [] where !referenced.contains(name) {
            let url = disksDirectory.appendingPathComponent(name)
            let modified = (try? url.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate) ?? .distantPast
            if modified < cutoff { try? FileManager.default.removeItem(at: url) }
        }
    }

    static func newSignature() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

import Crypto
import FactoryModel
import Foundation
import GRDB

/// A DevTest Labs artifact source (a git repository of artifacts attached to a lab).
public struct ArtifactSource: Codable, Sendable, Equatable {
    public var lab: LabID
    public var name: String
    public var displayName: String
    public var uri: String
    /// `VsoGit`, `GitHub` or `StorageAccount`.
    public var sourceType: String
    public var folderPath: String?
    public var armTemplateFolderPath: String?
    public var branchRef: String?
    /// `Enabled` or `Disabled`.
    public var status: String
    public var tags: [String: String]
    public var createdAt: Date

    public init(lab: LabID, name: String, displayName: String, uri: String, sourceType: String, folderPath: String? = nil,
                armTemplateFolderPath: String? = nil, branchRef: String? = nil, status: String = "Enabled",
                tags: [String: String] = [:], createdAt: Date = Date()) {
        self.lab = lab
        self.name = name
        self.displayName = displayName
        self.uri = uri
        self.sourceType = sourceType
        self.folderPath = folderPath
        self.armTemplateFolderPath = armTemplateFolderPath
        self.branchRef = branchRef
        self.status = status
        self.tags = tags
        self.createdAt = createdAt
    }

    public var resourceId: String { "\(lab.resourceId)/artifactsources/\(name)" }
}

/// What the ARM face of the local cloud (`imagefactory local serve`) needs beyond `CloudBackend`:
/// listings Azure offers (galleries, image definitions, storage accounts), storage account keys,
/// and artifact sources.
extension LocalCloud {
    /// Finds a storage account by name, the way DNS resolves `{name}.blob.core.windows.net`: a
    /// look-up, not an ARM request, so it is neither logged, throttled nor subject to faults.
    public func storageAccount(named name: String) async throws -> StorageAccountID? {
        try await db.read { db in
            try db.allRecords("lab", as: LabRecord.self).first { $0.storageAccount.name.lowercased() == name.lowercased() }?.storageAccount
        }
    }

    /// The storage accounts of a subscription (each lab has one), with their location and creation time.
    public func listStorageAccounts(subscriptionId: String) async throws -> [(account: StorageAccountID, location: String, createdAt: Date)] {
        try await perform("listStorageAccounts", kind: .read, write: false, subscription: subscriptionId, lab: nil,
                          resource: "/subscriptions/\(subscriptionId)/providers/Microsoft.Storage/storageAccounts") {
            try await self.db.read { db in
                try db.records("lab", parent: subscriptionId.lowercased(), as: LabRecord.self)
                    .map { ($0.storageAccount, $0.location, $0.createdAt) }
            }
        }
    }

    /// The two access keys of a storage account. They are derived from the account name, so they
    /// are stable and need no storage; like Azurite's well-known key, they protect nothing.
    public static func storageAccountKeys(_ account: StorageAccountID) -> [String] {
        ["key1", "key2"].map { keyName in
            Data(SHA512.hash(data: Data("imagefactory-local/\(account.name.lowercased())/\(keyName)".utf8))).base64EncodedString()
        }
    }

    // MARK: Galleries

    public func listGalleries(subscriptionId: String, resourceGroup: String?) async throws -> [Gallery] {
        try await perform("listGalleries", kind: .read, write: false, subscription: subscriptionId, lab: nil,
                          resource: "/subscriptions/\(subscriptionId)/galleries") {
            try await self.db.read { db in
                let now = self.clock.now()
                return try db.records("gallery", parent: subscriptionId.lowercased(), as: GalleryRecord.self)
                    .filter { resourceGroup == nil || $0.gallery.id.resourceGroup.lowercased() == resourceGroup!.lowercased() }
                    .map { record in
                        var gallery = record.gallery
                        gallery.provisioningState = now < record.readyAt ? "Creating" : "Succeeded"
                        return gallery
                    }
            }
        }
    }

    public func listImageDefinitions(_ gallery: GalleryID) async throws -> [GalleryImageDefinition] {
        try await perform("listImageDefinitions", kind: .read, write: false, subscription: gallery.subscriptionId, lab: nil, resource: gallery.name) {
            try await self.db.read { db in
                guard try db.record("gallery", LocalCloud.galleryKey(gallery), as: GalleryRecord.self) != nil else {
                    throw LocalCloud.resourceNotFound("Microsoft.Compute/galleries/\(gallery.name)", resourceGroup: gallery.resourceGroup)
                }
                let now = self.clock.now()
                return try db.records("imagedef", parent: LocalCloud.galleryKey(gallery), as: ImageDefinitionRecord.self).map { record in
                    var definition = record.definition
                    definition.provisioningState = now < record.readyAt ? "Creating" : "Succeeded"
                    return definition
                }
            }
        }
    }

    // MARK: Artifact sources

    /// Every lab has Microsoft's public artifact repository attached, as in Azure.
    static func publicRepository(_ lab: LabID, createdAt: Date) -> ArtifactSource {
        ArtifactSource(lab: lab, name: "public repo", displayName: "Public Artifact Repo",
                       uri: "https://github.com/Azure/azure-devtestlab.git", sourceType: "GitHub", folderPath: "/Artifacts",
                       armTemplateFolderPath: "/Environments", branchRef: "master", createdAt: createdAt)
    }

    /// A lab's record, or the 404 Azure gives for a missing lab.
    func labRecord(_ db: Database, _ id: LabID) throws -> LabRecord {
        _ = try lab(db, id)
        guard let record = try db.record("lab", LocalCloud.labKey(id), as: LabRecord.self) else {
            throw CloudError.notFound("lab", id.name)
        }
        return record
    }

    static func artifactSourceKey(_ lab: LabID, _ name: String) -> String { lab.key + "/" + name.lowercased() }

    public func listArtifactSources(lab: LabID) async throws -> [ArtifactSource] {
        try await perform("listArtifactSources", kind: .read, write: false, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/artifactsources") {
            try await self.db.read { db in
                let record = try self.labRecord(db, lab)
                var sources = try db.records("artifactsource", parent: lab.key, as: ArtifactSource.self)
                if !sources.contains(where: { $0.name.lowercased() == "public repo" }) {
                    sources.insert(LocalCloud.publicRepository(record.id, createdAt: record.createdAt), at: 0)
                }
                return sources
            }
        }
    }

    public func getArtifactSource(lab: LabID, name: String) async throws -> ArtifactSource {
        try await perform("getArtifactSource", kind: .read, write: false, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/artifactsources/" + name) {
            try await self.db.read { db in
                let record = try self.labRecord(db, lab)
                if let source = try db.record("artifactsource", LocalCloud.artifactSourceKey(lab, name), as: ArtifactSource.self) { return source }
                if name.lowercased() == "public repo" { return LocalCloud.publicRepository(record.id, createdAt: record.createdAt) }
                throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(lab.name)/artifactsources/\(name)", resourceGroup: lab.resourceGroup)
            }
        }
    }

    /// Creates or replaces an artifact source (synchronous in Azure too). Returns the source and whether it was new.
    public func putArtifactSource(_ source: ArtifactSource) async throws -> (ArtifactSource, created: Bool) {
        let lab = source.lab
        guard !source.name.isEmpty, source.name.count <= 80 else {
            throw CloudError(status: 400, code: "InvalidResourceName", message: "The artifact source name '\(source.name)' is invalid.")
        }
        guard ["vsogit", "github", "storageaccount"].contains(source.sourceType.lowercased()) else {
            throw CloudError(status: 400, code: "InvalidParameter", message: "The artifact source type '\(source.sourceType)' is invalid: use VsoGit, GitHub or StorageAccount.")
        }
        guard !source.uri.isEmpty else {
            throw CloudError(status: 400, code: "InvalidParameter", message: "The artifact source needs a uri.")
        }
        return try await perform("putArtifactSource", kind: .deployment, write: true, subscription: lab.subscriptionId, lab: lab.name, resource: source.resourceId) {
            try await self.db.write { db in
                _ = try self.lab(db, lab)
                let key = LocalCloud.artifactSourceKey(lab, source.name)
                let existing = try db.record("artifactsource", key, as: ArtifactSource.self)
                var stored = source
                stored.createdAt = existing?.createdAt ?? self.clock.now()
                try db.save("artifactsource", key, parent: lab.key, stored)
                return (stored, existing == nil)
            }
        }
    }

    public func deleteArtifactSource(lab: LabID, name: String) async throws -> Bool {
        try await perform("deleteArtifactSource", kind: .deployment, write: true, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/artifactsources/" + name) {
            try await self.db.write { db in
                _ = try self.lab(db, lab)
                let key = LocalCloud.artifactSourceKey(lab, name)
                guard try db.record("artifactsource", key, as: ArtifactSource.self) != nil else { return false }
                try db.remove("artifactsource", key)
                return true
            }
        }
    }
}

/// What the Blob REST face reports about a blob beyond `BlobProperties`: lease and copy details.
public struct BlobServiceDetails: Sendable, Equatable {
    /// `available`, `leased`, `expired` or `breaking` (`x-ms-lease-state`).
    public var leaseState: String
    /// `infinite` or `fixed` while leased.
    public var leaseDuration: String?
    /// The URL the blob was copied from, when it is the destination of a copy.
    public var copySource: String?
    /// When the copy started (the blob's last write) and when it completes or completed.
    public var copyStartedAt: Date?
    public var copyCompletesAt: Date?
}

extension LocalCloud {
    /// Lease and copy details of a blob, read as of now.
    public func blobServiceDetails(_ id: BlobID) async throws -> BlobServiceDetails {
        try await db.read { db in
            let record = try self.blob(db, id)
            let now = self.clock.now()
            var state = "available"
            var duration: String?
            if let lease = record.lease {
                if lease.expiresAt > now {
                    state = lease.breaking == true ? "breaking" : "leased"
                    duration = lease.expiresAt == .distantFuture ? "infinite" : "fixed"
                } else {
                    state = lease.breaking == true ? "broken" : "expired"
                }
            }
            return BlobServiceDetails(leaseState: state, leaseDuration: state == "leased" ? duration : nil, copySource: record.copy?.source,
                                      copyStartedAt: record.copy == nil ? nil : record.lastModified, copyCompletesAt: record.copy?.completesAt)
        }
    }

    /// Breaks a blob's lease: it stays held for `period` seconds (at most what remains), and no new
    /// lease can be acquired meanwhile. Returns the seconds left (`x-ms-lease-time`).
    public func breakLease(_ id: BlobID, period: Double?) async throws -> Int {
        try await perform("breakLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                let now = self.clock.now()
                guard var lease = record.lease, lease.expiresAt > now else {
                    throw CloudError(status: 409, code: "LeaseNotPresentWithLeaseOperation", message: "There is currently no lease on the blob.")
                }
                let remaining = lease.expiresAt == .distantFuture ? Double.infinity : lease.expiresAt.timeIntervalSince(now)
                let wait = max(0, min(period ?? remaining, remaining))
                lease.expiresAt = now.addingTimeInterval(wait.isFinite ? wait : 0)
                lease.breaking = true
                record.lease = lease
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
                return Int(wait.isFinite ? wait.rounded(.up) : 0)
            }
        }
    }

    /// Changes the id of an active lease.
    public func changeLease(_ id: BlobID, leaseID: String, proposedLeaseID: String) async throws {
        try Self.checkLeaseIDFormat(leaseID, header: "x-ms-lease-id")
        try Self.checkLeaseIDFormat(proposedLeaseID, header: "x-ms-proposed-lease-id")
        try await perform("changeLease", kind: .blobWrite, write: true, subscription: id.container.account.subscriptionId, lab: nil, resource: id.description) {
            try await self.db.write { db in
                var record = try self.blob(db, id)
                guard var lease = record.lease, lease.expiresAt > self.clock.now(), lease.id == leaseID || lease.id == proposedLeaseID else {
                    throw CloudError(status: 409, code: "LeaseIdMismatchWithLeaseOperation", message: "The lease ID specified did not match the lease ID for the blob.")
                }
                lease.id = proposedLeaseID
                record.lease = lease
                try db.save("blob", LocalCloud.blobKey(id), parent: LocalCloud.containerKey(id.container), record)
            }
        }
    }
}

import FactoryModel
import Foundation
import GRDB

// The local cloud's custom images provider.
extension LocalCloud {
    public func createCustomImage(_ request: CustomImageRequest) async throws -> OperationHandle {
        let id = request.id
        let delay = settings.latency.customImage
        let fails = await injected(.customImage, id.description, "operationFailure")
        return try await perform("createCustomImage", kind: .customImage, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.lab.resourceId + "/customimages/" + id.name) {
            let now = self.clock.now()
            let (lab, blob, existing) = try await self.db.read { db in
                (try self.lab(db, id.lab), try? self.blob(db, request.vhd), try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self))
            }
            if let existing {
                if existing.vhd == request.vhd.url && existing.tags == request.tags {
                    return .completed  // an idempotent retry of the same PUT
                }
                throw CloudError(status: 409, code: "Conflict", message: "A custom image named '\(id.name)' already exists in lab '\(id.lab.name)'.")
            }
            guard request.vhd.container.account.name.lowercased() == lab.storageAccount.name.lowercased() else {
                throw CloudError(status: 400, code: "InvalidVhdLocation",
                                 message: "The VHD '\(request.vhd.url)' must be in the lab's storage account '\(lab.storageAccount.name)'.")
            }
            guard let blob, blob.isComplete(at: now) else {
                throw CloudError(status: 400, code: "InvalidVhd", message: "The VHD '\(request.vhd.url)' does not exist or its copy is not complete.")
            }
            try LocalCloud.checkImportableVHD(blob, uri: request.vhd.url)
            // The image keeps its own copy of the disk (a hard link: free, and the source blob may be deleted).
            let file = UUID().uuidString.lowercased() + ".vhd"
            let target = self.imagesDirectory.appendingPathComponent(file)
            if link(self.blobsDirectory.appendingPathComponent(blob.file).path, target.path) != 0 {
                try SparseFile.copy(self.blobsDirectory.appendingPathComponent(blob.file), to: target)
            }
            let readyAt = now.addingTimeInterval(delay)
            let record = ImageRecord(id: id, osType: request.osType, sysprep: request.sysprep, description: request.description,
                                     author: request.author, tags: request.tags, createdAt: now, readyAt: readyAt,
                                     failure: fails ? "The custom image creation failed: InternalServerError (injected fault)." : nil,
                                     vhd: request.vhd.url, file: file, md5: blob.md5)
            return try await self.commit(file: target) { db in
                if try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self) != nil {
                    throw CloudError(status: 409, code: "Conflict", message: "A custom image named '\(id.name)' already exists in lab '\(id.lab.name)'.")
                }
                try db.save("image", LocalCloud.imageKey(id), parent: id.lab.key, record)
                let error = record.failure.map { CloudError(status: 200, code: "InternalServerError", message: $0) }
                return try self.operation(db, completesAt: readyAt, error: error)
            }
        }
    }

    public func getCustomImage(_ id: CustomImageID) async throws -> CustomImage {
        try await perform("getCustomImage", kind: .read, write: false, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.lab.resourceId + "/customimages/" + id.name) {
            try await self.db.read { db in try self.image(db, id).view(at: self.clock.now()) }
        }
    }

    func image(_ db: Database, _ id: CustomImageID) throws -> ImageRecord {
        guard let record = try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self) else {
            throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(id.lab.name)/customimages/\(id.name)", resourceGroup: id.lab.resourceGroup)
        }
        return record
    }

    public func listCustomImages(lab: LabID) async throws -> [CustomImage] {
        try await perform("listCustomImages", kind: .read, write: false, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/customimages") {
            try await self.db.read { db in
                _ = try self.lab(db, lab)
                let now = self.clock.now()
                return try db.records("image", parent: lab.key, as: ImageRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func deleteCustomImage(_ id: CustomImageID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        let (handle, file) = try await perform("deleteCustomImage", kind: .imageDelete, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.lab.resourceId + "/customimages/" + id.name) {
            try await self.db.write { db -> (OperationHandle, String?) in
                let record = try self.image(db, id)
                try db.remove("image", LocalCloud.imageKey(id))
                return (try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay)), record.file)
            }
        }
        if let file { try? FileManager.default.removeItem(at: imagesDirectory.appendingPathComponent(file)) }
        return handle
    }

    /// The file holding a custom image's disk, so tests can prove what reached a lab byte for byte.
    public func customImageFile(_ id: CustomImageID) async throws -> URL? {
        try await db.read { db in try db.record("image", LocalCloud.imageKey(id), as: ImageRecord.self)?.file }
            .map { imagesDirectory.appendingPathComponent($0) }
    }

    /// The file holding a blob's bytes.
    public func blobFile(_ id: BlobID) async throws -> URL {
        try await db.read { db in self.blobsDirectory.appendingPathComponent(try self.blob(db, id).file) }
    }
}

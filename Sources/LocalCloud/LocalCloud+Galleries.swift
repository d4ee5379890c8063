import FactoryModel
import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Azure Compute Gallery emulation: galleries, image definitions and versions replicated to regions.
extension LocalCloud {
    /// The gallery name rule from the Compute spec: 1 to 80 word characters, '.', '_' or '-',
    /// not starting with '_' or a non-word character, not ending with '-' or '.'.
    static func galleryNameProblem(_ name: String) -> String? {
        guard (1...80).contains(name.count) else { return "must be 1 to 80 characters" }
        let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }
        guard allowed else { return "may contain only letters, digits, '_', '-' and '.'" }
        if let first = name.first, first == "_" || !(first.isLetter || first.isNumber) { return "must start with a letter or digit" }
        if let last = name.last, last == "-" || last == "." { return "must not end with '-' or '.'" }
        return nil
    }

    /// Most image definitions a gallery holds, and versions a definition holds (Azure's documented quotas).
    static let maxDefinitionsPerGallery = 1000
    static let maxVersionsPerDefinition = 10_000

    public func createGallery(_ id: GalleryID, location: String, description: String) async throws -> OperationHandle {
        if let problem = LocalCloud.galleryNameProblem(id.name) {
            throw CloudError(status: 400, code: "InvalidParameter", message: "The gallery name '\(id.name)' is invalid: it \(problem).")
        }
        let delay = settings.latency.customImage
        return try await perform("createGallery", kind: .gallery, write: true, subscription: id.subscriptionId, lab: nil, resource: id.name) {
            try await self.db.write { db in
                let key = LocalCloud.galleryKey(id)
                let readyAt = self.clock.now().addingTimeInterval(delay)
                if let existing = try db.record("gallery", key, as: GalleryRecord.self) {
                    return try self.operation(db, completesAt: existing.readyAt)
                }
                let gallery = Gallery(id: id, location: Location.normalize(location), description: description, provisioningState: "Succeeded")
                try db.save("gallery", key, parent: id.subscriptionId.lowercased(), GalleryRecord(gallery: gallery, readyAt: readyAt))
                return try self.operation(db, completesAt: readyAt)
            }
        }
    }

    public func getGallery(_ id: GalleryID) async throws -> Gallery {
        try await perform("getGallery", kind: .read, write: false, subscription: id.subscriptionId, lab: nil, resource: id.name) {
            try await self.db.read { db in
                guard let record = try db.record("gallery", LocalCloud.galleryKey(id), as: GalleryRecord.self) else {
                    throw LocalCloud.resourceNotFound("Microsoft.Compute/galleries/\(id.name)", resourceGroup: id.resourceGroup)
                }
                var gallery = record.gallery
                gallery.provisioningState = self.clock.now() < record.readyAt ? "Creating" : "Succeeded"
                return gallery
            }
        }
    }

    public func createImageDefinition(_ definition: GalleryImageDefinition) async throws -> OperationHandle {
        let id = definition.id
        let delay = settings.latency.customImage
        return try await perform("createImageDefinition", kind: .gallery, write: true, subscription: id.gallery.subscriptionId, lab: nil, resource: "\(id.gallery.name)/\(id.name)") {
            try await self.db.write { db in
                guard try db.record("gallery", LocalCloud.galleryKey(id.gallery), as: GalleryRecord.self) != nil else {
                    throw CloudError(status: 404, code: "ParentResourceNotFound", message: "Can not perform requested operation on nested resource. Parent resource '\(id.gallery.name)' not found.")
                }
                let key = LocalCloud.definitionKey(id)
                if let existing = try db.record("imagedef", key, as: ImageDefinitionRecord.self) {
                    let e = existing.definition
                    if e.osType != definition.osType || e.osState != definition.osState {
                        throw CloudError(status: 409, code: "PropertyChangeNotAllowed", message: "Changing property 'osState' or 'osType' is not allowed.")
                    }
                    return try self.operation(db, completesAt: existing.readyAt)
                }
                if try db.count("imagedef", parent: LocalCloud.galleryKey(id.gallery)) >= LocalCloud.maxDefinitionsPerGallery {
                    throw CloudError(status: 409, code: "QuotaExceeded", message: "The gallery '\(id.gallery.name)' already has the maximum of \(LocalCloud.maxDefinitionsPerGallery) image definitions.")
                }
                var stored = definition
                stored.provisioningState = "Succeeded"
                let readyAt = self.clock.now().addingTimeInterval(delay)
                try db.save("imagedef", key, parent: LocalCloud.galleryKey(id.gallery), ImageDefinitionRecord(definition: stored, readyAt: readyAt))
                return try self.operation(db, completesAt: readyAt)
            }
        }
    }

    public func getImageDefinition(_ id: GalleryImageDefinitionID) async throws -> GalleryImageDefinition {
        try await perform("getImageDefinition", kind: .read, write: false, subscription: id.gallery.subscriptionId, lab: nil, resource: "\(id.gallery.name)/\(id.name)") {
            try await self.db.read { db in
                guard let record = try db.record("imagedef", LocalCloud.definitionKey(id), as: ImageDefinitionRecord.self) else {
                    throw CloudError(status: 404, code: "ResourceNotFound", message: "The Resource 'Microsoft.Compute/galleries/\(id.gallery.name)/images/\(id.name)' was not found.")
                }
                var d = record.definition
                d.provisioningState = self.clock.now() < record.readyAt ? "Creating" : "Succeeded"
                return d
            }
        }
    }

    public func createImageVersion(_ request: GalleryImageVersionRequest) async throws -> OperationHandle {
        let id = request.id
        let parts = id.version.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) && Int($0).map { $0 <= Int32.max } == true }) else {
            throw CloudError(status: 400, code: "InvalidParameter", message: "The gallery image version name '\(id.version)' is invalid: use Major.Minor.Patch with 32-bit integers.")
        }
        let latency = settings.latency
        let fails = await injected(.gallery, "\(id.definition.name)/\(id.version)", "operationFailure")
        return try await perform("createImageVersion", kind: .gallery, write: true, subscription: id.definition.gallery.subscriptionId, lab: nil, resource: "\(id.definition.gallery.name)/\(id.definition.name)/\(id.version)") {
            let now = self.clock.now()
            let blob = try await self.db.read { db -> BlobRecord in
                guard try db.record("imagedef", LocalCloud.definitionKey(id.definition), as: ImageDefinitionRecord.self) != nil else {
                    throw CloudError(status: 404, code: "ParentResourceNotFound", message: "Parent resource '\(id.definition.name)' not found.")
                }
                if try db.record("imageversion", LocalCloud.versionKey(id), as: ImageVersionRecord.self) != nil {
                    throw CloudError(status: 409, code: "Conflict", message: "Gallery image version '\(id.version)' already exists.")
                }
                if try db.count("imageversion", parent: LocalCloud.definitionKey(id.definition)) >= LocalCloud.maxVersionsPerDefinition {
                    throw CloudError(status: 409, code: "QuotaExceeded", message: "The image definition already has the maximum number of versions.")
                }
                let blob = try self.blob(db, request.sourceVHD)
                guard blob.isComplete(at: now) else {
                    throw CloudError(status: 400, code: "InvalidParameter", message: "The source VHD's copy is not complete.")
                }
                return blob
            }
            let file = UUID().uuidString.lowercased() + ".vhd"
            let target = self.imagesDirectory.appendingPathComponent(file)
            if link(self.blobsDirectory.appendingPathComponent(blob.file).path, target.path) != 0 {
                try SparseFile.copy(self.blobsDirectory.appendingPathComponent(blob.file), to: target)
            }
            var regionReady: [String: Date] = [:]
            for (i, region) in request.targetRegions.enumerated() {
                let extra = Location.normalize(region.name) == Location.normalize(request.location) ? 0 : Double(i + 1) * 0.25
                regionReady[region.name] = now.addingTimeInterval(latency.galleryVersion * (1 + extra))
            }
            let record = ImageVersionRecord(id: id, location: Location.normalize(request.location), tags: request.tags, targetRegions: request.targetRegions,
                                            createdAt: now, regionReadyAt: regionReady,
                                            failure: fails ? "Replication failed (injected fault)." : nil, file: file)
            let done = regionReady.values.max() ?? now
            return try await self.commit(file: target) { db in
                try db.save("imageversion", LocalCloud.versionKey(id), parent: LocalCloud.definitionKey(id.definition), record)
                return try self.operation(db, completesAt: done, error: record.failure.map { CloudError(status: 200, code: "ReplicationFailed", message: $0) })
            }
        }
    }

    public func getImageVersion(_ id: GalleryImageVersionID) async throws -> GalleryImageVersion {
        try await perform("getImageVersion", kind: .read, write: false, subscription: id.definition.gallery.subscriptionId, lab: nil, resource: "\(id.definition.gallery.name)/\(id.definition.name)/\(id.version)") {
            try await self.db.read { db in
                guard let record = try db.record("imageversion", LocalCloud.versionKey(id), as: ImageVersionRecord.self) else {
                    throw CloudError(status: 404, code: "ResourceNotFound", message: "Gallery image version '\(id.version)' was not found.")
                }
                return record.view(at: self.clock.now())
            }
        }
    }

    public func listImageVersions(_ definition: GalleryImageDefinitionID) async throws -> [GalleryImageVersion] {
        try await perform("listImageVersions", kind: .read, write: false, subscription: definition.gallery.subscriptionId, lab: nil, resource: "\(definition.gallery.name)/\(definition.name)") {
            try await self.db.read { db in
                let now = self.clock.now()
                return try db.records("imageversion", parent: LocalCloud.definitionKey(definition), as: ImageVersionRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func deleteImageVersion(_ id: GalleryImageVersionID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        let (handle, file) = try await perform("deleteImageVersion", kind: .imageDelete, write: true, subscription: id.definition.gallery.subscriptionId, lab: nil, resource: "\(id.definition.gallery.name)/\(id.definition.name)/\(id.version)") {
            try await self.db.write { db -> (OperationHandle, String?) in
                guard let record = try db.record("imageversion", LocalCloud.versionKey(id), as: ImageVersionRecord.self) else {
                    throw CloudError(status: 404, code: "ResourceNotFound", message: "Gallery image version '\(id.version)' was not found.")
                }
                try db.remove("imageversion", LocalCloud.versionKey(id))
                return (try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay)), record.file)
            }
        }
        if let file { try? FileManager.default.removeItem(at: imagesDirectory.appendingPathComponent(file)) }
        return handle
    }
}

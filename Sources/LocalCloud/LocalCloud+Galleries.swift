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

    public func createGallery(_ id: GalleryID, location: String, description: String, tags: [String: String]) async throws -> OperationHandle {
        if let problem = LocalCloud.galleryNameProblem(id.name) {
            throw CloudError(status: 400, code: "InvalidParameter", message: "The gallery name '\(id.name)' is invalid: it \(problem).")
        }
        let delay = settings.latency.customImage
        return try await perform("createGallery", kind: .gallery, write: true, subscription: id.subscriptionId, lab: nil, resource: id.name) {
            try await self.db.write { db in
                let key = LocalCloud.galleryKey(id)
                let readyAt = self.clock.now().addingTimeInterval(delay)
                if var existing = try db.record("gallery", key, as: GalleryRecord.self) {
                    // A PUT of an existing gallery updates its description and tags.
                    existing.gallery.description = description
                    existing.gallery.tags = tags
                    try db.save("gallery", key, parent: id.subscriptionId.lowercased(), existing)
                    return try self.operation(db, completesAt: existing.readyAt)
                }
                let gallery = Gallery(id: id, location: Location.normalize(location), description: description, provisioningState: "Succeeded", tags: tags)
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
                if var existing = try db.record("imagedef", key, as: ImageDefinitionRecord.self) {
                    let e = existing.definition
                    if e.osType != definition.osType || e.osState != definition.osState {
                        throw CloudError(status: 409, code: "PropertyChangeNotAllowed", message: "Changing property 'osState' or 'osType' is not allowed.")
                    }
                    if e.publisher != definition.publisher || e.offer != definition.offer || e.sku != definition.sku {
                        throw CloudError(status: 409, code: "PropertyChangeNotAllowed", message: "Changing property 'galleryImage.properties.identifier' is not allowed.")
                    }
                    // Tags, end of life and recommendations may change.
                    existing.definition.tags = definition.tags
                    existing.definition.endOfLife = definition.endOfLife
                    existing.definition.recommendedVCPUs = definition.recommendedVCPUs
                    existing.definition.recommendedMemoryGB = definition.recommendedMemoryGB
                    try db.save("imagedef", key, parent: LocalCloud.galleryKey(id.gallery), existing)
                    return try self.operation(db, completesAt: existing.readyAt)
                }
                let identifierTaken = try db.records("imagedef", parent: LocalCloud.galleryKey(id.gallery), as: ImageDefinitionRecord.self).contains {
                    $0.definition.publisher.lowercased() == definition.publisher.lowercased() && $0.definition.offer.lowercased() == definition.offer.lowercased()
                        && $0.definition.sku.lowercased() == definition.sku.lowercased()
                }
                if identifierTaken {
                    throw CloudError(status: 409, code: "Conflict", message: "An image definition with publisher '\(definition.publisher)', offer '\(definition.offer)' and SKU '\(definition.sku)' already exists in gallery '\(id.gallery.name)'.")
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
        // Drawn per definition (the n-th creation in a definition gets the n-th draw), so a seed gives the same faults whatever the version numbers.
        let fails = await injected(.gallery, "\(id.definition.gallery.name)/\(id.definition.name)", "operationFailure")
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
                try LocalCloud.checkImportableVHD(blob, uri: request.sourceVHD.url)
                return blob
            }
            let file = UUID().uuidString.lowercased() + ".vhd"
            let target = self.imagesDirectory.appendingPathComponent(file)
            if link(self.blobsDirectory.appendingPathComponent(blob.file).path, target.path) != 0 {
                try SparseFile.copy(self.blobsDirectory.appendingPathComponent(blob.file), to: target)
            }
            var record = ImageVersionRecord(id: id, location: Location.normalize(request.location), tags: request.tags, targetRegions: request.targetRegions,
                                            createdAt: now, regionReadyAt: [:],
                                            failure: fails ? "The source VHD could not be read: the version failed (injected fault)." : nil, file: file,
                                            regionFailures: [:], regionAttempts: [:], excludeFromLatest: request.excludeFromLatest,
                                            endOfLife: request.endOfLife)
            for (i, region) in request.targetRegions.enumerated() {
                await self.startReplication(&record, region: region.name, index: i, now: now)
            }
            let done = record.regionReadyAt.values.max() ?? now
            let stored = record
            return try await self.commit(file: target) { db in
                try db.save("imageversion", LocalCloud.versionKey(id), parent: LocalCloud.definitionKey(id.definition), stored)
                return try self.operation(db, completesAt: done, error: LocalCloud.replicationError(stored))
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

    /// Starts one region's replication attempt: when it ends (the profile's `galleryVersion`, a
    /// little longer away from the source, times the region's `delayFactor`) and whether it fails
    /// (`failFirstAttempts` of the region, or a seeded `gallery.replicationFailure` / region rate).
    func startReplication(_ record: inout ImageVersionRecord, region: String, index: Int, now: Date) async {
        let regionSettings = settings.galleryRegions[Location.normalize(region)] ?? GalleryRegionSettings()
        let away = Location.normalize(region) == record.location ? 0 : Double(index + 1) * 0.25
        let delay = settings.latency.galleryVersion * (1 + away) * (regionSettings.delayFactor ?? 1)
        let attempt = record.regionAttempts?[region] ?? 0
        record.regionAttempts = (record.regionAttempts ?? [:]).merging([region: attempt + 1]) { _, new in new }
        record.regionReadyAt[region] = now.addingTimeInterval(delay)
        let resource = "\(record.id.definition.name)/\(record.id.version)/\(Location.normalize(region))"
        let rate = max(faults.rates(.gallery)?.replicationFailure ?? 0, regionSettings.replicationFailure ?? 0)
        var failed = attempt < (regionSettings.failFirstAttempts ?? 0)
        if !failed, rate > 0 { failed = await faults.roll(.gallery, resource: resource, fault: "replicationFailure", rate: rate) }
        var failures = record.regionFailures ?? [:]
        failures[region] = failed ? "Replication to \(region) failed (attempt \(attempt + 1)): the replica could not be written." : nil
        record.regionFailures = failures
    }

    /// The error an operation on a version ends with: none, or the failed regions (or the whole version).
    static func replicationError(_ record: ImageVersionRecord) -> CloudError? {
        if let failure = record.failure { return CloudError(status: 200, code: "ReplicationFailed", message: failure) }
        let regions = (record.regionFailures ?? [:]).keys.sorted()
        guard !regions.isEmpty else { return nil }
        return CloudError(status: 200, code: "ReplicationFailed", message: "Replication failed in \(regions.joined(separator: ", ")); the other regions completed.")
    }

    public func updateImageVersion(_ id: GalleryImageVersionID, targetRegions: [TargetRegion]?, excludeFromLatest: Bool?) async throws -> OperationHandle {
        try await perform("updateImageVersion", kind: .gallery, write: true, subscription: id.definition.gallery.subscriptionId, lab: nil,
                          resource: "\(id.definition.gallery.name)/\(id.definition.name)/\(id.version)") {
            let now = self.clock.now()
            guard var record = try await self.db.read({ db in try db.record("imageversion", LocalCloud.versionKey(id), as: ImageVersionRecord.self) }) else {
                throw CloudError(status: 404, code: "ResourceNotFound", message: "Gallery image version '\(id.version)' was not found.")
            }
            let view = record.view(at: now)
            if view.replication.contains(where: { $0.state == "Replicating" }) {
                throw CloudError(status: 409, code: "OperationNotAllowed", message: "Gallery image version '\(id.version)' is being replicated; update it when that has finished.")
            }
            if let excludeFromLatest { record.excludeFromLatest = excludeFromLatest }
            if let targetRegions {
                if let failure = record.failure {
                    throw CloudError(status: 409, code: "OperationNotAllowed", message: "Gallery image version '\(id.version)' failed (\(failure)); delete it and create it again.")
                }
                guard targetRegions.contains(where: { Location.normalize($0.name) == record.location }) else {
                    throw CloudError(status: 400, code: "InvalidParameter", message: "The target regions must include the version's source region '\(record.location)'.")
                }
                let states = Dictionary(view.replication.map { ($0.region, $0.state) }, uniquingKeysWith: { a, _ in a })
                var kept: [String: Date] = [:]
                for region in targetRegions where states[region.name] == "Completed" {
                    kept[region.name] = record.regionReadyAt[region.name]
                }
                record.regionReadyAt = kept
                record.regionFailures = (record.regionFailures ?? [:]).filter { kept[$0.key] != nil }
                record.targetRegions = targetRegions
                record.updatedAt = now
                // Only regions that are new or failed replicate (again); completed ones are left alone.
                for (i, region) in targetRegions.enumerated() where kept[region.name] == nil {
                    await self.startReplication(&record, region: region.name, index: i, now: now)
                }
            }
            let done = record.regionReadyAt.values.filter { $0 > now }.max() ?? now
            let stored = record
            return try await self.db.write { db in
                try db.save("imageversion", LocalCloud.versionKey(id), parent: LocalCloud.definitionKey(id.definition), stored)
                return try self.operation(db, completesAt: done, error: LocalCloud.replicationError(stored))
            }
        }
    }

    public func deleteImageDefinition(_ id: GalleryImageDefinitionID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        return try await perform("deleteImageDefinition", kind: .imageDelete, write: true, subscription: id.gallery.subscriptionId, lab: nil,
                                 resource: "\(id.gallery.name)/\(id.name)") {
            try await self.db.write { db in
                guard try db.record("imagedef", LocalCloud.definitionKey(id), as: ImageDefinitionRecord.self) != nil else {
                    throw CloudError(status: 404, code: "ResourceNotFound", message: "The Resource 'Microsoft.Compute/galleries/\(id.gallery.name)/images/\(id.name)' was not found.")
                }
                if try db.count("imageversion", parent: LocalCloud.definitionKey(id)) > 0 {
                    throw CloudError(status: 409, code: "CannotDeleteResource", message: "Can not delete resource before nested resources are deleted: image definition '\(id.name)' still holds versions.")
                }
                try db.remove("imagedef", LocalCloud.definitionKey(id))
                return try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay))
            }
        }
    }
}

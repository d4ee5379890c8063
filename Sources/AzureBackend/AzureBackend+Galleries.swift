import FactoryModel
import Foundation

/// Azure Compute Gallery: galleries, image definitions and versions (with per-region replication).
extension AzureBackend {
    static func galleryPath(_ id: GalleryID) -> String {
        "/subscriptions/\(id.subscriptionId)/resourceGroups/\(id.resourceGroup)/providers/Microsoft.Compute/galleries/\(id.name)"
    }
    static func definitionPath(_ id: GalleryImageDefinitionID) -> String { "\(galleryPath(id.gallery))/images/\(id.name)" }
    static func versionPath(_ id: GalleryImageVersionID) -> String { "\(definitionPath(id.definition))/versions/\(id.version)" }

    public func createGallery(_ id: GalleryID, location: String, description: String, tags: [String: String]) async throws -> OperationHandle {
        let path = Self.galleryPath(id)
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.galleries,
                                     body: ["location": location, "tags": tags, "properties": ["description": description]])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.galleries))
    }

    public func getGallery(_ id: GalleryID) async throws -> Gallery {
        let json = try await armJSON(Self.galleryPath(id), apiVersion: AzureAPIVersions.galleries)
        return Gallery(id: id, location: json["location"] as? String ?? "", description: Self.string(json, "properties", "description") ?? "",
                       provisioningState: Self.string(json, "properties", "provisioningState") ?? "Succeeded", tags: Self.tags(json))
    }

    public func createImageDefinition(_ definition: GalleryImageDefinition) async throws -> OperationHandle {
        let path = Self.definitionPath(definition.id)
        var properties: [String: Any] = [
            "osType": definition.osType.rawValue, "osState": definition.osState == .generalized ? "Generalized" : "Specialized",
            "identifier": ["publisher": definition.publisher, "offer": definition.offer, "sku": definition.sku],
        ]
        if let generation = definition.hyperVGeneration { properties["hyperVGeneration"] = generation }
        if let endOfLife = definition.endOfLife { properties["endOfLifeDate"] = SASSigner.iso(endOfLife) }
        if let description = definition.description { properties["description"] = description }
        var recommended: [String: Any] = [:]
        if let cpus = definition.recommendedVCPUs { recommended["vCPUs"] = ["min": 1, "max": max(1, cpus)] }
        if let memory = definition.recommendedMemoryGB { recommended["memory"] = ["min": 1, "max": max(1, memory)] }
        if !recommended.isEmpty { properties["recommended"] = recommended }
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.galleries,
                                     body: ["location": definition.location, "tags": definition.tags, "properties": properties])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.galleries))
    }

    public func getImageDefinition(_ id: GalleryImageDefinitionID) async throws -> GalleryImageDefinition {
        Self.imageDefinition(try await armJSON(Self.definitionPath(id), apiVersion: AzureAPIVersions.galleries), gallery: id.gallery)
    }

    public func listImageDefinitions(_ gallery: GalleryID) async throws -> [GalleryImageDefinition] {
        try await armList("\(Self.galleryPath(gallery))/images", apiVersion: AzureAPIVersions.galleries).map { Self.imageDefinition($0, gallery: gallery) }
    }

    static func imageDefinition(_ json: [String: Any], gallery: GalleryID) -> GalleryImageDefinition {
        let properties = json["properties"] as? [String: Any] ?? [:]
        let recommended = properties["recommended"] as? [String: Any] ?? [:]
        return GalleryImageDefinition(
            id: GalleryImageDefinitionID(gallery: gallery, name: json["name"] as? String ?? ""), location: json["location"] as? String ?? "",
            osType: Self.string(json, "properties", "osType").flatMap(OSType.init(caseInsensitive:)) ?? .windows,
            osState: Self.string(json, "properties", "osState").flatMap(OSState.init(caseInsensitive:)) ?? .generalized,
            publisher: Self.string(json, "properties", "identifier", "publisher") ?? "", offer: Self.string(json, "properties", "identifier", "offer") ?? "",
            sku: Self.string(json, "properties", "identifier", "sku") ?? "", provisioningState: Self.string(json, "properties", "provisioningState") ?? "Succeeded",
            tags: tags(json), hyperVGeneration: properties["hyperVGeneration"] as? String,
            recommendedVCPUs: (recommended["vCPUs"] as? [String: Any])?["max"] as? Int, recommendedMemoryGB: (recommended["memory"] as? [String: Any])?["max"] as? Int,
            endOfLife: date(properties["endOfLifeDate"] as? String), description: properties["description"] as? String)
    }

    public func deleteImageDefinition(_ id: GalleryImageDefinitionID) async throws -> OperationHandle {
        handle(try await arm("DELETE", Self.definitionPath(id), apiVersion: AzureAPIVersions.galleries), resourceURL: nil)
    }

    /// A version from a VHD in a storage account (`storageProfile.osDiskImage.source`), replicated to the target regions.
    public func createImageVersion(_ request: GalleryImageVersionRequest) async throws -> OperationHandle {
        let path = Self.versionPath(request.id)
        let uri = try await blobURL(request.sourceVHD)
        var publishing: [String: Any] = ["targetRegions": request.targetRegions.map(Self.regionJSON), "excludeFromLatest": request.excludeFromLatest]
        if let endOfLife = request.endOfLife { publishing["endOfLifeDate"] = SASSigner.iso(endOfLife) }
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.galleries, body: [
            "location": request.location, "tags": request.tags,
            "properties": [
                "publishingProfile": publishing,
                "storageProfile": ["osDiskImage": ["source": ["uri": uri.absoluteString, "storageAccountId": request.sourceVHD.container.account.resourceId]]],
            ],
        ])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.galleries))
    }

    public func getImageVersion(_ id: GalleryImageVersionID) async throws -> GalleryImageVersion {
        Self.imageVersion(try await armJSON(Self.versionPath(id), apiVersion: AzureAPIVersions.galleries, query: [("$expand", "ReplicationStatus")]),
                          definition: id.definition)
    }

    public func listImageVersions(_ definition: GalleryImageDefinitionID) async throws -> [GalleryImageVersion] {
        try await armList("\(Self.definitionPath(definition))/versions", apiVersion: AzureAPIVersions.galleries)
            .map { Self.imageVersion($0, definition: definition) }
    }

    static func regionJSON(_ region: TargetRegion) -> [String: Any] {
        var json: [String: Any] = ["name": region.name, "regionalReplicaCount": region.regionalReplicaCount]
        if let type = region.storageAccountType { json["storageAccountType"] = type }
        return json
    }

    /// PATCH (GalleryImageVersions_Update): a failed region replicates again, a removed one is dropped.
    public func updateImageVersion(_ id: GalleryImageVersionID, targetRegions: [TargetRegion]?, excludeFromLatest: Bool?) async throws -> OperationHandle {
        var publishing: [String: Any] = [:]
        if let targetRegions { publishing["targetRegions"] = targetRegions.map(Self.regionJSON) }
        if let excludeFromLatest { publishing["excludeFromLatest"] = excludeFromLatest }
        let path = Self.versionPath(id)
        // The update's properties require the storage profile (the spec's GalleryImageVersionProperties): send the version's own.
        let current = try await armJSON(path, apiVersion: AzureAPIVersions.galleries)
        var properties: [String: Any] = ["publishingProfile": publishing, "storageProfile": [String: Any]()]
        if let source = Self.dictionary(current, "properties", "storageProfile", "osDiskImage", "source") {
            properties["storageProfile"] = ["osDiskImage": ["source": source.filter { ["uri", "storageAccountId", "id"].contains($0.key) }]]
        }
        let response = try await arm("PATCH", path, apiVersion: AzureAPIVersions.galleries, body: ["properties": properties])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.galleries))
    }

    static func imageVersion(_ json: [String: Any], definition: GalleryImageDefinitionID) -> GalleryImageVersion {
        let properties = json["properties"] as? [String: Any] ?? [:]
        let publishing = properties["publishingProfile"] as? [String: Any] ?? [:]
        let regions = (publishing["targetRegions"] as? [[String: Any]] ?? []).compactMap { r -> TargetRegion? in
            guard let name = r["name"] as? String else { return nil }
            return TargetRegion(name: name, regionalReplicaCount: r["regionalReplicaCount"] as? Int ?? 1, storageAccountType: r["storageAccountType"] as? String)
        }
        let replication = properties["replicationStatus"] as? [String: Any] ?? [:]
        let summary = (replication["summary"] as? [[String: Any]] ?? []).map {
            RegionReplication(region: $0["region"] as? String ?? "", state: $0["state"] as? String ?? "Unknown", progress: $0["progress"] as? Int ?? 0)
        }
        return GalleryImageVersion(
            id: GalleryImageVersionID(definition: definition, version: json["name"] as? String ?? ""), location: json["location"] as? String ?? "",
            provisioningState: properties["provisioningState"] as? String ?? "Creating", tags: tags(json), targetRegions: regions,
            aggregatedReplicationState: replication["aggregatedState"] as? String ?? "Unknown", replication: summary,
            createdAt: date(publishing["publishedDate"] as? String) ?? Date(timeIntervalSince1970: 0),
            excludeFromLatest: publishing["excludeFromLatest"] as? Bool ?? false, endOfLife: date(publishing["endOfLifeDate"] as? String))
    }

    public func deleteImageVersion(_ id: GalleryImageVersionID) async throws -> OperationHandle {
        handle(try await arm("DELETE", Self.versionPath(id), apiVersion: AzureAPIVersions.galleries), resourceURL: nil)
    }
}

import FactoryModel
import Foundation

/// Azure Compute Gallery: galleries, image definitions and versions (with per-region replication).
extension AzureBackend {
    static func galleryPath(_ id: GalleryID) -> String {
        "/subscriptions/\(id.subscriptionId)/resourceGroups/\(id.resourceGroup)/providers/Microsoft.Compute/galleries/\(id.name)"
    }
    static func definitionPath(_ id: GalleryImageDefinitionID) -> String { "\(galleryPath(id.gallery))/images/\(id.name)" }
    static func versionPath(_ id: GalleryImageVersionID) -> String { "\(definitionPath(id.definition))/versions/\(id.version)" }

    public func createGallery(_ id: GalleryID, location: String, description: String) async throws -> OperationHandle {
        let path = Self.galleryPath(id)
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.galleries,
                                     body: ["location": location, "properties": ["description": description]])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.galleries))
    }

    public func getGallery(_ id: GalleryID) async throws -> Gallery {
        let json = try await armJSON(Self.galleryPath(id), apiVersion: AzureAPIVersions.galleries)
        return Gallery(id: id, location: json["location"] as? String ?? "", description: Self.string(json, "properties", "description") ?? "",
                       provisioningState: Self.string(json, "properties", "provisioningState") ?? "Succeeded")
    }

    public func createImageDefinition(_ definition: GalleryImageDefinition) async throws -> OperationHandle {
        let path = Self.definitionPath(definition.id)
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.galleries, body: [
            "location": definition.location,
            "properties": [
                "osType": definition.osType.rawValue, "osState": definition.osState == .generalized ? "Generalized" : "Specialized",
                "identifier": ["publisher": definition.publisher, "offer": definition.offer, "sku": definition.sku],
            ],
        ])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.galleries))
    }

    public func getImageDefinition(_ id: GalleryImageDefinitionID) async throws -> GalleryImageDefinition {
        let json = try await armJSON(Self.definitionPath(id), apiVersion: AzureAPIVersions.galleries)
        return GalleryImageDefinition(
            id: id, location: json["location"] as? String ?? "",
            osType: Self.string(json, "properties", "osType").flatMap(OSType.init(caseInsensitive:)) ?? .windows,
            osState: Self.string(json, "properties", "osState").flatMap(OSState.init(caseInsensitive:)) ?? .generalized,
            publisher: Self.string(json, "properties", "identifier", "publisher") ?? "", offer: Self.string(json, "properties", "identifier", "offer") ?? "",
            sku: Self.string(json, "properties", "identifier", "sku") ?? "", provisioningState: Self.string(json, "properties", "provisioningState") ?? "Succeeded")
    }

    /// A version from a VHD in a storage account (`storageProfile.osDiskImage.source`), replicated to the target regions.
    public func createImageVersion(_ request: GalleryImageVersionRequest) async throws -> OperationHandle {
        let path = Self.versionPath(request.id)
        let uri = try await blobURL(request.sourceVHD)
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.galleries, body: [
            "location": request.location, "tags": request.tags,
            "properties": [
                "publishingProfile": ["targetRegions": request.targetRegions.map { ["name": $0.name, "regionalReplicaCount": $0.regionalReplicaCount] }],
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

    static func imageVersion(_ json: [String: Any], definition: GalleryImageDefinitionID) -> GalleryImageVersion {
        let properties = json["properties"] as? [String: Any] ?? [:]
        let publishing = properties["publishingProfile"] as? [String: Any] ?? [:]
        let regions = (publishing["targetRegions"] as? [[String: Any]] ?? []).compactMap { r -> TargetRegion? in
            guard let name = r["name"] as? String else { return nil }
            return TargetRegion(name: name, regionalReplicaCount: r["regionalReplicaCount"] as? Int ?? 1)
        }
        let replication = properties["replicationStatus"] as? [String: Any] ?? [:]
        let summary = (replication["summary"] as? [[String: Any]] ?? []).map {
            RegionReplication(region: $0["region"] as? String ?? "", state: $0["state"] as? String ?? "Unknown", progress: $0["progress"] as? Int ?? 0)
        }
        return GalleryImageVersion(
            id: GalleryImageVersionID(definition: definition, version: json["name"] as? String ?? ""), location: json["location"] as? String ?? "",
            provisioningState: properties["provisioningState"] as? String ?? "Creating", tags: tags(json), targetRegions: regions,
            aggregatedReplicationState: replication["aggregatedState"] as? String ?? "Unknown", replication: summary,
            createdAt: date(publishing["publishedDate"] as? String) ?? Date(timeIntervalSince1970: 0))
    }

    public func deleteImageVersion(_ id: GalleryImageVersionID) async throws -> OperationHandle {
        handle(try await arm("DELETE", Self.versionPath(id), apiVersion: AzureAPIVersions.galleries), resourceURL: nil)
    }
}

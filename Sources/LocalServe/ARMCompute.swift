import FactoryModel
import Foundation
import LocalCloud

/// Microsoft.Compute: galleries, image definitions and versions (with `$expand=ReplicationStatus`),
/// and the compute VM and OS disk behind each lab VM (with grant / revoke access). Long-running
/// operations answer with `Azure-AsyncOperation`, as the Compute resource provider does.
extension LocalServeService {
    static let computeProvider = "Microsoft.Compute"

    static func galleryResourceID(_ id: GalleryID) -> String {
        "/subscriptions/\(id.subscriptionId)/resourceGroups/\(id.resourceGroup)/providers/Microsoft.Compute/galleries/\(id.name)"
    }

    func galleryJSON(_ g: Gallery) -> JSONValue {
        ["id": .string(Self.galleryResourceID(g.id)), "name": .string(g.id.name), "type": "Microsoft.Compute/galleries",
         "location": .string(g.location), "tags": .strings(g.tags),
         "properties": ["description": .string(g.description), "provisioningState": .string(g.provisioningState),
                        "identifier": ["uniqueName": .string("\(g.id.subscriptionId)-\(g.id.name.uppercased())")]]]
    }

    func listGalleries(_ request: ServeRequest, sub: String, rg: String?) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        return page(request, try await cloud.listGalleries(subscriptionId: sub, resourceGroup: rg).map(galleryJSON))
    }

    func galleryResource(_ request: ServeRequest, _ id: GalleryID) async throws -> ServeResponse {
        switch request.method {
        case "GET":
            return .json(200, galleryJSON(try await cloud.getGallery(id)))
        case "PUT":
            guard let body = request.json, let location = body["location"]?.string else {
                return .armError(400, "InvalidParameter", "The gallery needs a location.")
            }
            let existed = (try? await cloud.getGallery(id)) != nil
            let handle = try await cloud.createGallery(id, location: location, description: body["properties"]?["description"]?.string ?? "",
                                                       tags: body["tags"]?.stringMap ?? [:])
            let gallery = try await cloud.getGallery(id)
            return started(request, handle, status: existed ? 200 : 201, body: galleryJSON(gallery), provider: Self.computeProvider,
                           location: gallery.location, finalTarget: nil, headers: .asyncOperation)
        default:
            return Self.methodNotAllowed(request, "GET and PUT")
        }
    }

    func imageDefinitionJSON(_ d: GalleryImageDefinition) -> JSONValue {
        let id = "\(Self.galleryResourceID(d.id.gallery))/images/\(d.id.name)"
        var properties: [String: JSONValue] = [
            "osType": .string(d.osType.rawValue), "osState": .string(d.osState == .generalized ? "Generalized" : "Specialized"),
            "hyperVGeneration": .string(d.hyperVGeneration ?? "V1"), "architecture": "x64",
            "identifier": ["publisher": .string(d.publisher), "offer": .string(d.offer), "sku": .string(d.sku)],
            "provisioningState": .string(d.provisioningState),
        ]
        if let endOfLife = d.endOfLife { properties["endOfLifeDate"] = .string(endOfLife.ISO8601Format()) }
        if let description = d.description { properties["description"] = .string(description) }
        var recommended: [String: JSONValue] = [:]
        if let cpus = d.recommendedVCPUs { recommended["vCPUs"] = ["min": 1, "max": .number(Double(cpus))] }
        if let memory = d.recommendedMemoryGB { recommended["memory"] = ["min": 1, "max": .number(Double(memory))] }
        if !recommended.isEmpty { properties["recommended"] = .object(recommended) }
        return ["id": .string(id), "name": .string(d.id.name), "type": "Microsoft.Compute/galleries/images",
                "location": .string(d.location), "tags": .strings(d.tags), "properties": .object(properties)]
    }

    func listImageDefinitions(_ request: ServeRequest, _ gallery: GalleryID) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        return page(request, try await cloud.listImageDefinitions(gallery).map(imageDefinitionJSON))
    }

    func imageDefinition(_ request: ServeRequest, _ id: GalleryImageDefinitionID) async throws -> ServeResponse {
        switch request.method {
        case "GET":
            return .json(200, imageDefinitionJSON(try await cloud.getImageDefinition(id)))
        case "PUT":
            guard let body = request.json, let p = body["properties"], let location = body["location"]?.string else {
                return .armError(400, "InvalidParameter", "The image definition needs a location and properties.")
            }
            guard let osType = p["osType"]?.string.flatMap(OSType.init(caseInsensitive:)),
                  let osState = p["osState"]?.string.flatMap(OSState.init(caseInsensitive:)) else {
                return .armError(400, "InvalidParameter", "The image definition needs properties.osType (Windows or Linux) and properties.osState (Generalized or Specialized).")
            }
            guard let identifier = p["identifier"], let publisher = identifier["publisher"]?.string, let offer = identifier["offer"]?.string,
                  let sku = identifier["sku"]?.string else {
                return .armError(400, "InvalidParameter", "The image definition needs properties.identifier with publisher, offer and sku.")
            }
            let existed = (try? await cloud.getImageDefinition(id)) != nil
            let recommended = p["recommended"]
            let handle = try await cloud.createImageDefinition(GalleryImageDefinition(
                id: id, location: location, osType: osType, osState: osState, publisher: publisher, offer: offer, sku: sku, provisioningState: "Creating",
                tags: body["tags"]?.stringMap ?? [:], hyperVGeneration: p["hyperVGeneration"]?.string,
                recommendedVCPUs: recommended?["vCPUs"]?["max"]?.int, recommendedMemoryGB: recommended?["memory"]?["max"]?.int,
                endOfLife: p["endOfLifeDate"]?.string.flatMap(Self.isoDate), description: p["description"]?.string))
            let created = try await cloud.getImageDefinition(id)
            return started(request, handle, status: existed ? 200 : 201, body: imageDefinitionJSON(created), provider: Self.computeProvider,
                           location: created.location, finalTarget: nil, headers: .asyncOperation)
        case "DELETE":
            let gallery = try await cloud.getGallery(id.gallery)
            let handle: OperationHandle
            do {
                handle = try await cloud.deleteImageDefinition(id)
            } catch let error as CloudError where error.isNotFound {
                return ServeResponse(status: 204)
            }
            return started(request, handle, status: 202, body: nil, provider: Self.computeProvider, location: gallery.location, finalTarget: nil, headers: .both)
        default:
            return Self.methodNotAllowed(request, "GET, PUT and DELETE")
        }
    }

    static func isoDate(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    func imageVersionJSON(_ v: GalleryImageVersion, expandReplication: Bool) -> JSONValue {
        let id = "\(Self.galleryResourceID(v.id.definition.gallery))/images/\(v.id.definition.name)/versions/\(v.id.version)"
        var properties: [String: JSONValue] = [
            "publishingProfile": .object(publishingProfile(v)),
            "storageProfile": ["osDiskImage": ["hostCaching": "ReadOnly"]],
            "safetyProfile": ["allowDeletionOfReplicatedLocations": true, "reportedForPolicyViolation": false],
            "provisioningState": .string(v.provisioningState),
        ]
        if expandReplication {
            properties["replicationStatus"] = [
                "aggregatedState": .string(v.aggregatedReplicationState),
                "summary": .array(v.replication.map {
                    ["region": .string($0.region), "state": .string($0.state), "details": "", "progress": .number(Double($0.progress))]
                }),
            ]
        }
        return ["id": .string(id), "name": .string(v.id.version), "type": "Microsoft.Compute/galleries/images/versions",
                "location": .string(v.location), "tags": .strings(v.tags), "properties": .object(properties)]
    }

    func publishingProfile(_ v: GalleryImageVersion) -> [String: JSONValue] {
        var profile: [String: JSONValue] = [
            "targetRegions": .array(v.targetRegions.map {
                ["name": .string($0.name), "regionalReplicaCount": .number(Double($0.regionalReplicaCount)),
                 "storageAccountType": .string($0.storageAccountType ?? "Standard_LRS")]
            }),
            "replicaCount": 1, "excludeFromLatest": .bool(v.excludeFromLatest), "publishedDate": .string(v.createdAt.ISO8601Format()),
            "storageAccountType": "Standard_LRS",
        ]
        if let endOfLife = v.endOfLife { profile["endOfLifeDate"] = .string(endOfLife.ISO8601Format()) }
        return profile
    }

    static func regions(_ value: JSONValue?) -> [TargetRegion]? {
        guard let array = value?.array else { return nil }
        return array.compactMap { r -> TargetRegion? in
            guard let name = r["name"]?.string else { return nil }
            return TargetRegion(name: Location.normalize(name), regionalReplicaCount: r["regionalReplicaCount"]?.int ?? 1,
                                storageAccountType: r["storageAccountType"]?.string)
        }
    }

    func listImageVersions(_ request: ServeRequest, _ definition: GalleryImageDefinitionID) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        _ = try await cloud.getImageDefinition(definition)
        let versions = try await cloud.listImageVersions(definition)
        return page(request, versions.map { imageVersionJSON($0, expandReplication: false) })
    }

    func imageVersion(_ request: ServeRequest, _ id: GalleryImageVersionID) async throws -> ServeResponse {
        switch request.method {
        case "GET":
            let expand = (request.query("$expand") ?? "").lowercased() == "replicationstatus"
            return .json(200, imageVersionJSON(try await cloud.getImageVersion(id), expandReplication: expand))
        case "PUT":
            guard let body = request.json, let p = body["properties"], let location = body["location"]?.string else {
                return .armError(400, "InvalidParameter", "The image version needs a location and properties.")
            }
            guard let source = p["storageProfile"]?["osDiskImage"]?["source"], let uri = source["uri"]?.string else {
                return .armError(400, "InvalidParameter", "The local cloud makes image versions from a VHD: give properties.storageProfile.osDiskImage.source.uri (and storageAccountId).")
            }
            var account: StorageAccountID?
            if let accountID = source["storageAccountId"]?.string, let name = accountID.split(separator: "/").last {
                account = try await cloud.storageAccount(named: String(name))
            }
            if account == nil, let host = URLComponents(string: uri)?.host, host.hasSuffix(".blob.core.windows.net") {
                account = try await cloud.storageAccount(named: String(host.split(separator: ".")[0]))
            }
            if account == nil, let first = URLComponents(string: uri)?.path.split(separator: "/").first {
                account = try await cloud.storageAccount(named: String(first))
            }
            guard let account else {
                return .armError(400, "InvalidParameter", "The storage account of the source VHD '\(uri)' does not exist in the local cloud.")
            }
            let blob = try await blobID(fromURI: uri, defaultAccount: account, defaultContainer: "vhds")
            let regions = Self.regions(p["publishingProfile"]?["targetRegions"]) ?? []
            let request2 = GalleryImageVersionRequest(id: id, location: location, sourceVHD: blob,
                                                      targetRegions: regions.isEmpty ? [TargetRegion(name: Location.normalize(location))] : regions,
                                                      tags: body["tags"]?.stringMap ?? [:],
                                                      excludeFromLatest: p["publishingProfile"]?["excludeFromLatest"]?.bool ?? false,
                                                      endOfLife: p["publishingProfile"]?["endOfLifeDate"]?.string.flatMap(Self.isoDate))
            if let existing = try? await cloud.getImageVersion(id) {
                return .json(200, imageVersionJSON(existing, expandReplication: false))  // an idempotent retry of the PUT
            }
            let handle = try await cloud.createImageVersion(request2)
            let created = try await cloud.getImageVersion(id)
            return started(request, handle, status: 201, body: imageVersionJSON(created, expandReplication: false), provider: Self.computeProvider,
                           location: created.location, finalTarget: nil, headers: .asyncOperation)
        case "PATCH":
            // GalleryImageVersions_Update: target regions (failed ones replicate again) and excludeFromLatest.
            let profile = request.json?["properties"]?["publishingProfile"]
            let definition = try await cloud.getImageDefinition(id.definition)
            let handle = try await cloud.updateImageVersion(id, targetRegions: Self.regions(profile?["targetRegions"]), excludeFromLatest: profile?["excludeFromLatest"]?.bool)
            let updated = try await cloud.getImageVersion(id)
            return started(request, handle, status: 200, body: imageVersionJSON(updated, expandReplication: false), provider: Self.computeProvider,
                           location: definition.location, finalTarget: nil, headers: .asyncOperation)
        case "DELETE":
            let definition = try await cloud.getImageDefinition(id.definition)
            let handle: OperationHandle
            do {
                handle = try await cloud.deleteImageVersion(id)
            } catch let error as CloudError where error.isNotFound {
                return ServeResponse(status: 204)
            }
            return started(request, handle, status: 202, body: nil, provider: Self.computeProvider, location: definition.location, finalTarget: nil, headers: .both)
        default:
            return Self.methodNotAllowed(request, "GET, PUT, PATCH and DELETE")
        }
    }
}

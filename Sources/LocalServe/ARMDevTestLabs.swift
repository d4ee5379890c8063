import FactoryModel
import Foundation
import LocalCloud

/// Microsoft.DevTestLab (api-version 2018-09-15): labs, lab virtual machines, custom images and
/// artifact sources. Long-running operations answer with `Location` and `Retry-After` only, as the
/// DevTest Labs spec declares (`final-state-via: location`).
extension LocalServeService {
    static let dtlProvider = "Microsoft.DevTestLab"

    // MARK: Labs

    func labJSON(_ lab: Lab) -> JSONValue {
        let account = JSONValue.string(lab.storageAccount.resourceId)
        return [
            "id": .string(lab.id.resourceId), "name": .string(lab.id.name), "type": "Microsoft.DevTestLab/labs",
            "location": .string(lab.location), "tags": [:],
            "properties": [
                "defaultStorageAccount": account, "defaultPremiumStorageAccount": account, "artifactsStorageAccount": account,
                "premiumDataDiskStorageAccount": account, "labStorageType": "Premium", "premiumDataDisks": "Disabled",
                "environmentPermission": "Reader", "mandatoryArtifactsResourceIdsLinux": [], "mandatoryArtifactsResourceIdsWindows": [],
                "vmCreationResourceGroup": .string(lab.id.resourceGroup), "provisioningState": .string(lab.provisioningState.rawValue),
                "uniqueIdentifier": .string(Self.uniqueIdentifier(lab.id.resourceId)),
            ],
        ]
    }

    /// A stable GUID for a resource, as ARM's `uniqueIdentifier`.
    static func uniqueIdentifier(_ resourceId: String) -> String {
        let h1 = StableHash.fnv1a("a|" + resourceId.lowercased())
        let h2 = StableHash.fnv1a("b|" + resourceId.lowercased())
        let hex = String(format: "%016llx%016llx", h1, h2)
        let c = Array(hex)
        return "\(String(c[0..<8]))-\(String(c[8..<12]))-\(String(c[12..<16]))-\(String(c[16..<20]))-\(String(c[20..<32]))"
    }

    func listLabs(_ request: ServeRequest, sub: String, rg: String?) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let labs = try await cloud.listLabs(subscriptionId: sub)
            .filter { rg == nil || $0.id.resourceGroup.lowercased() == rg!.lowercased() }
            .sorted { $0.id.name.lowercased() < $1.id.name.lowercased() }
        return page(request, labs.map(labJSON))
    }

    func lab(_ request: ServeRequest, _ id: LabID) async throws -> ServeResponse {
        switch request.method {
        case "GET":
            return .json(200, labJSON(try await cloud.getLab(id)))
        case "PUT":
            // Creating a lab takes the local cloud no time; a new lab still answers in ARM's LRO shape
            // (201 with Location), whose status URL reports success at once.
            let existed = (try? await cloud.getLab(id)) != nil
            let lab = try await cloud.createLab(id, location: request.json?["location"]?.string ?? "westeurope")
            if existed { return .json(200, labJSON(lab)) }
            return started(request, .completed, status: 201, body: labJSON(lab),
                           provider: Self.dtlProvider, location: lab.location, finalTarget: Self.selfTarget(request), headers: .location)
        default:
            return Self.methodNotAllowed(request, "GET and PUT (labs are not deleted through the local cloud's REST face)")
        }
    }

    // MARK: Lab virtual machines

    func labVMJSON(_ vm: LabVirtualMachine, lab: Lab, expand: String?) -> JSONValue {
        let expand = (expand ?? "").lowercased()
        let applied = vm.artifacts.filter { $0.status == "Succeeded" }.count
        let deploymentStatus: String
        if vm.artifacts.contains(where: { $0.status == "Failed" }) { deploymentStatus = "Failed" }
        else if vm.artifacts.allSatisfy({ $0.status == "Succeeded" }) { deploymentStatus = vm.artifacts.isEmpty ? "NotStarted" : "Succeeded" }
        else { deploymentStatus = "Installing" }
        // The compute VM lives in the lab's vmCreationResourceGroup (its own resource group): see ARMComputeDisks.swift.
        let computeID = Self.computeVMResourceID(lab.id, vm.id.name)
        var properties: [String: JSONValue] = [
            "provisioningState": .string(vm.provisioningState.rawValue), "lastKnownPowerState": .string(vm.powerState.rawValue),
            "createdDate": .string(vm.createdAt.ISO8601Format()), "computeId": .string(computeID),
            "artifactDeploymentStatus": ["deploymentStatus": .string(deploymentStatus), "artifactsApplied": .number(Double(applied)),
                                         "totalArtifacts": .number(Double(vm.artifacts.count))],
            "ownerObjectId": "", "allowClaim": false, "disallowPublicIpAddress": true, "storageType": "Standard",
            "virtualMachineCreationSource": "FromGalleryImage", "uniqueIdentifier": .string(Self.uniqueIdentifier(vm.id.resourceId)),
        ]
        if let os = vm.osType { properties["osType"] = .string(os.rawValue) }
        if expand.contains("artifacts") {
            properties["artifacts"] = .array(vm.artifacts.map { artifact in
                var a: [String: JSONValue] = [
                    "artifactId": .string("\(lab.id.resourceId)/artifactSources/public repo/artifacts/\(artifact.name)"),
                    "artifactTitle": .string(artifact.name), "status": .string(artifact.status),
                ]
                if let message = artifact.message { a["deploymentStatusMessage"] = .string(message) }
                return .object(a)
            })
        }
        if expand.contains("computevm") {
            properties["computeVm"] = [
                "statuses": [["code": .string("ProvisioningState/\(vm.provisioningState.rawValue.lowercased())"), "displayStatus": .string("Provisioning \(vm.provisioningState.rawValue.lowercased())")],
                             ["code": .string("PowerState/\(vm.powerState.rawValue.lowercased())"), "displayStatus": .string("VM \(vm.powerState.rawValue.lowercased())")]],
                "osType": vm.osType.map { .string($0.rawValue) } ?? .null,
                "vmSize": "Standard_DS2_v2",
                "osDiskId": .string(Self.diskResourceID(lab.id, vm.id.name)),
                "dataDiskIds": [], "dataDisks": [],
            ]
        }
        return [
            "id": .string(vm.id.resourceId), "name": .string(vm.id.name), "type": "Microsoft.DevTestLab/labs/virtualMachines",
            "location": .string(lab.location), "tags": .strings(vm.tags), "properties": .object(properties),
        ]
    }

    func listLabVMs(_ request: ServeRequest, _ lab: LabID) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let labInfo = try await cloud.getLab(lab)
        let vms = try await cloud.listVirtualMachines(lab: lab)
        return page(request, vms.map { labVMJSON($0, lab: labInfo, expand: request.query("$expand")) })
    }

    func labVM(_ request: ServeRequest, _ id: VirtualMachineID) async throws -> ServeResponse {
        switch request.method {
        case "GET":
            let lab = try await cloud.getLab(id.lab)
            return .json(200, labVMJSON(try await cloud.getVirtualMachine(id), lab: lab, expand: request.query("$expand")))
        case "PUT":
            return try await createLabVM(request, id)
        case "PATCH":
            // Azure's VirtualMachines_Update changes tags only ("All other properties will be ignored").
            let lab = try await cloud.getLab(id.lab)
            if let tags = request.json?["tags"] { try await cloud.updateVirtualMachineTags(id, tags: tags.stringMap) }
            return .json(200, labVMJSON(try await cloud.getVirtualMachine(id), lab: lab, expand: nil))
        case "DELETE":
            let lab = try await cloud.getLab(id.lab)
            let handle: OperationHandle
            do {
                handle = try await cloud.deleteVirtualMachine(id)
            } catch let error as CloudError where error.isNotFound {
                return ServeResponse(status: 204)  // ARM: deleting what is not there succeeds with 204
            }
            return started(request, handle, status: 202, body: nil, provider: Self.dtlProvider, location: lab.location, finalTarget: nil, headers: .location)
        default:
            return Self.methodNotAllowed(request, "GET, PUT, PATCH and DELETE")
        }
    }

    /// `PUT .../virtualmachines/{name}`: a lab VM from a marketplace image (`galleryImageReference`) or a
    /// custom image (`customImageId`) with artifacts. The local cloud runs it as the deployment of a
    /// one-resource template, which is what DevTest Labs does behind the call.
    func createLabVM(_ request: ServeRequest, _ id: VirtualMachineID) async throws -> ServeResponse {
        guard let body = request.json, let properties = body["properties"] else {
            return .armError(400, "InvalidRequestContent", "The request content is not valid JSON with a 'properties' object.")
        }
        let lab = try await cloud.getLab(id.lab)
        if let existing = try? await cloud.getVirtualMachine(id) {
            // A PUT is idempotent: the VM exists (a retried create). Updating a lab VM's other properties is not emulated.
            return .json(200, labVMJSON(existing, lab: lab, expand: nil))
        }
        var vmProperties = properties.object ?? [:]
        if properties["galleryImageReference"] == nil, let customImageID = properties["customImageId"]?.string {
            let name = customImageID.split(separator: "/").last.map(String.init) ?? customImageID
            let image = try await cloud.getCustomImage(CustomImageID(lab: id.lab, name: name))
            vmProperties["galleryImageReference"] = ["osType": .string(image.osType.rawValue), "publisher": "customImage",
                                                     "offer": .string(name), "sku": "custom", "version": "latest"]
        }
        guard let reference = vmProperties["galleryImageReference"], reference["osType"]?.string != nil else {
            return .armError(400, "InvalidParameter", "The virtual machine needs properties.galleryImageReference with an osType (or a customImageId).")
        }
        let template: JSONValue = ["$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
                                   "contentVersion": "1.0.0.0",
                                   "resources": [["type": "Microsoft.DevTestLab/labs/virtualmachines", "apiVersion": "2018-09-15",
                                                  "name": .string("\(id.lab.name)/\(id.name)"), "properties": .object(vmProperties)]]]
        let artifacts = (properties["artifacts"]?.array ?? []).compactMap { artifact -> ArtifactReference? in
            guard let artifactID = artifact["artifactId"]?.string else { return nil }
            let parameters = (artifact["parameters"]?.array ?? []).compactMap { p -> ArtifactParameter? in
                guard let name = p["name"]?.string else { return nil }
                let value = p["value"].map { $0.string ?? String(decoding: $0.data, as: UTF8.self) } ?? ""
                return ArtifactParameter(name: name, value: value)
            }
            return ArtifactReference(artifactId: artifactID, parameters: parameters)
        }
        var parameters: [String: String] = ["newVMName": id.name, "labName": id.lab.name]
        for key in ["size", "userName"] { if let v = properties[key]?.string { parameters[key] = v } }
        let deployment = VMDeploymentRequest(vm: id, template: template.data, parameters: parameters, artifacts: artifacts,
                                             tags: body["tags"]?.stringMap ?? [:], deploymentName: "dtl-\(id.name.lowercased())")
        let handle = try await cloud.deployVirtualMachine(deployment)
        let vm = try await cloud.getVirtualMachine(id)
        return started(request, handle, status: 201, body: labVMJSON(vm, lab: lab, expand: nil), provider: Self.dtlProvider,
                       location: lab.location, finalTarget: Self.selfTarget(request), headers: .location)
    }

    func labVMAction(_ request: ServeRequest, _ id: VirtualMachineID, action: String) async throws -> ServeResponse {
        guard request.method == "POST" else { return Self.methodNotAllowed(request, "POST") }
        let lab = try await cloud.getLab(id.lab)
        let handle: OperationHandle
        switch action.lowercased() {
        case "start": handle = try await cloud.startVirtualMachine(id)
        case "stop": handle = try await cloud.stopVirtualMachine(id)
        default:
            return .armError(400, "InvalidAction", "The local cloud supports the lab VM actions start and stop; '\(action)' is not emulated.")
        }
        return started(request, handle, status: 202, body: nil, provider: Self.dtlProvider, location: lab.location, finalTarget: nil, headers: .location)
    }

    // MARK: Custom images

    func customImageJSON(_ image: CustomImage, lab: Lab) -> JSONValue {
        let resourceId = "\(image.id.lab.resourceId)/customimages/\(image.id.name)"
        var vhd: [String: JSONValue] = ["osType": .string(image.osType.rawValue), "sysPrep": .bool(image.sysprep)]
        if let uri = image.vhd { vhd["imageName"] = .string(uri) }
        return [
            "id": .string(resourceId), "name": .string(image.id.name), "type": "Microsoft.DevTestLab/labs/customImages",
            "location": .string(lab.location), "tags": .strings(image.tags),
            "properties": ["vhd": .object(vhd), "description": .string(image.description), "author": "",
                           "creationDate": .string(image.createdAt.ISO8601Format()), "provisioningState": .string(image.provisioningState.rawValue),
                           "uniqueIdentifier": .string(Self.uniqueIdentifier(resourceId))],
        ]
    }

    func listCustomImages(_ request: ServeRequest, _ lab: LabID) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let labInfo = try await cloud.getLab(lab)
        let images = try await cloud.listCustomImages(lab: lab)
        return page(request, images.map { customImageJSON($0, lab: labInfo) })
    }

    func customImage(_ request: ServeRequest, _ id: CustomImageID) async throws -> ServeResponse {
        let lab = try await cloud.getLab(id.lab)
        switch request.method {
        case "GET":
            return .json(200, customImageJSON(try await cloud.getCustomImage(id), lab: lab))
        case "PUT":
            guard let body = request.json, let properties = body["properties"] else {
                return .armError(400, "InvalidRequestContent", "The request content is not valid JSON with a 'properties' object.")
            }
            guard let vhd = properties["vhd"], let imageName = vhd["imageName"]?.string else {
                return .armError(400, "InvalidParameter", "The local cloud makes custom images from VHDs: give properties.vhd.imageName (the VHD's blob URI) and osType. Capture from a VM (properties.vm) is done by exporting its disk first.")
            }
            guard let osType = vhd["osType"]?.string.flatMap(OSType.init(caseInsensitive:)) else {
                return .armError(400, "InvalidParameter", "properties.vhd.osType must be Windows or Linux.")
            }
            let blob = try await blobID(fromURI: imageName, defaultAccount: lab.storageAccount, defaultContainer: "uploads")
            let imageRequest = CustomImageRequest(id: id, vhd: blob, osType: osType, sysprep: vhd["sysPrep"]?.bool ?? false,
                                                  description: properties["description"]?.string ?? "",
                                                  author: properties["author"]?.string ?? "", tags: body["tags"]?.stringMap ?? [:])
            let existed = (try? await cloud.getCustomImage(id)) != nil
            let handle = try await cloud.createCustomImage(imageRequest)
            let image = try await cloud.getCustomImage(id)
            if existed { return .json(200, customImageJSON(image, lab: lab)) }
            return started(request, handle, status: 201, body: customImageJSON(image, lab: lab), provider: Self.dtlProvider,
                           location: lab.location, finalTarget: Self.selfTarget(request), headers: .location)
        case "DELETE":
            let handle: OperationHandle
            do {
                handle = try await cloud.deleteCustomImage(id)
            } catch let error as CloudError where error.isNotFound {
                return ServeResponse(status: 204)
            }
            return started(request, handle, status: 202, body: nil, provider: Self.dtlProvider, location: lab.location, finalTarget: nil, headers: .location)
        default:
            return Self.methodNotAllowed(request, "GET, PUT and DELETE")
        }
    }

    /// A blob from a URI as clients write it (see `BlobService.blobID(fromURI:cloud:)`), or a bare blob
    /// name in the default account and container.
    func blobID(fromURI uri: String, defaultAccount: StorageAccountID, defaultContainer: String) async throws -> BlobID {
        guard URLComponents(string: uri)?.host != nil else {
            return BlobID(container: ContainerID(account: defaultAccount, name: defaultContainer), name: uri)
        }
        return try await BlobService.blobID(fromURI: uri, cloud: cloud)
    }

    // MARK: Artifact sources

    func artifactSourceJSON(_ source: ArtifactSource, lab: Lab) -> JSONValue {
        var properties: [String: JSONValue] = [
            "displayName": .string(source.displayName), "uri": .string(source.uri), "sourceType": .string(source.sourceType),
            "status": .string(source.status), "createdDate": .string(source.createdAt.ISO8601Format()),
            "provisioningState": "Succeeded", "uniqueIdentifier": .string(Self.uniqueIdentifier(source.resourceId)),
        ]
        if let v = source.folderPath { properties["folderPath"] = .string(v) }
        if let v = source.armTemplateFolderPath { properties["armTemplateFolderPath"] = .string(v) }
        if let v = source.branchRef { properties["branchRef"] = .string(v) }
        return ["id": .string(source.resourceId), "name": .string(source.name), "type": "Microsoft.DevTestLab/labs/artifactsources",
                "location": .string(lab.location), "tags": .strings(source.tags), "properties": .object(properties)]
    }

    func listArtifactSources(_ request: ServeRequest, _ lab: LabID) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let labInfo = try await cloud.getLab(lab)
        return page(request, try await cloud.listArtifactSources(lab: lab).map { artifactSourceJSON($0, lab: labInfo) })
    }

    func artifactSource(_ request: ServeRequest, _ lab: LabID, name: String) async throws -> ServeResponse {
        let labInfo = try await cloud.getLab(lab)
        switch request.method {
        case "GET":
            return .json(200, artifactSourceJSON(try await cloud.getArtifactSource(lab: lab, name: name), lab: labInfo))
        case "PUT":
            // Synchronous in the spec: 200 or 201, no LRO headers.
            guard let body = request.json, let p = body["properties"] else {
                return .armError(400, "InvalidRequestContent", "The request content is not valid JSON with a 'properties' object.")
            }
            let source = ArtifactSource(lab: lab, name: name, displayName: p["displayName"]?.string ?? name, uri: p["uri"]?.string ?? "",
                                        sourceType: p["sourceType"]?.string ?? "", folderPath: p["folderPath"]?.string,
                                        armTemplateFolderPath: p["armTemplateFolderPath"]?.string, branchRef: p["branchRef"]?.string,
                                        status: p["status"]?.string ?? "Enabled", tags: body["tags"]?.stringMap ?? [:])
            let (stored, created) = try await cloud.putArtifactSource(source)
            return .json(created ? 201 : 200, artifactSourceJSON(stored, lab: labInfo))
        case "PATCH":
            var source = try await cloud.getArtifactSource(lab: lab, name: name)
            if let tags = request.json?["tags"] { source.tags = tags.stringMap }
            return .json(200, artifactSourceJSON(try await cloud.putArtifactSource(source).0, lab: labInfo))
        case "DELETE":
            return ServeResponse(status: try await cloud.deleteArtifactSource(lab: lab, name: name) ? 200 : 204)
        default:
            return Self.methodNotAllowed(request, "GET, PUT, PATCH and DELETE")
        }
    }
}

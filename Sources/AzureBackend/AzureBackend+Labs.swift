import FactoryModel
import Foundation

/// DevTest Labs: labs, lab VMs (deployed from golden-image templates as resource-group
/// deployments), custom images, deployment history, and exporting a VM's OS disk.
extension AzureBackend {
    static let vmExpand = "properties($expand=artifacts,computeVm)"

    // MARK: Labs

    public func listLabs(subscriptionId: String) async throws -> [Lab] {
        try await armList("/subscriptions/\(subscriptionId)/providers/Microsoft.DevTestLab/labs", apiVersion: AzureAPIVersions.devTestLabs)
            .compactMap(Self.lab)
    }

    public func getLab(_ id: LabID) async throws -> Lab {
        let json = try await armJSON(id.resourceId, apiVersion: AzureAPIVersions.devTestLabs)
        guard let lab = Self.lab(json) else {
            throw CloudError(status: 502, code: "InvalidResponse", message: "The lab \(id) came back without an id or a default storage account.")
        }
        return lab
    }

    static func lab(_ json: [String: Any]) -> Lab? {
        guard let id = json["id"] as? String, let parts = idParts(id),
              let accountID = string(json, "properties", "defaultStorageAccount"), let account = idParts(accountID) else { return nil }
        return Lab(id: LabID(subscriptionId: parts.subscription, resourceGroup: parts.resourceGroup, name: json["name"] as? String ?? parts.name),
                   location: json["location"] as? String ?? "",
                   storageAccount: StorageAccountID(subscriptionId: account.subscription, resourceGroup: account.resourceGroup, name: account.name),
                   provisioningState: ProvisioningState(string(json, "properties", "provisioningState") ?? "Succeeded"))
    }

    // MARK: Lab virtual machines

    /// A resource-group deployment of the golden-image template, as the original factory deploys it.
    /// The factory's artifacts that the template does not list yet (the generalize artifact) are
    /// added to its lab VM resource, with the factory's tags; only parameters the template declares
    /// are passed (ARM refuses others).
    public func deployVirtualMachine(_ request: VMDeploymentRequest) async throws -> OperationHandle {
        guard var template = (try? JSONSerialization.jsonObject(with: request.template)) as? [String: Any] else {
            throw CloudError(status: 400, code: "InvalidTemplate", message: "The template for \(request.vm) is not a JSON object.")
        }
        var resources = template["resources"] as? [[String: Any]] ?? []
        guard let index = resources.firstIndex(where: { ($0["type"] as? String)?.lowercased() == "microsoft.devtestlab/labs/virtualmachines" }) else {
            throw CloudError(status: 400, code: "InvalidTemplate", message: "The template for \(request.vm) has no Microsoft.DevTestLab/labs/virtualmachines resource.")
        }
        var vm = resources[index]
        var properties = vm["properties"] as? [String: Any] ?? [:]
        var artifacts = properties["artifacts"] as? [[String: Any]] ?? []
        let present = Set(artifacts.compactMap { ($0["artifactId"] as? String).map { ArtifactReference.shortName(of: $0).lowercased() } })
        for artifact in request.artifacts where !present.contains(artifact.name.lowercased()) {
            var entry: [String: Any] = ["artifactId": "\(request.vm.lab.resourceId)/artifactSources/public repo/artifacts/\(artifact.name)"]
            if !artifact.parameters.isEmpty { entry["parameters"] = artifact.parameters.map { ["name": $0.name, "value": $0.value] } }
            artifacts.append(entry)
        }
        properties["artifacts"] = artifacts
        vm["properties"] = properties
        var tags = (vm["tags"] as? [String: Any]) ?? [:]
        for (k, v) in request.tags { tags[k] = v }
        vm["tags"] = tags
        resources[index] = vm
        template["resources"] = resources
        let declared = Set(((template["parameters"] as? [String: Any]) ?? [:]).keys.map { $0.lowercased() })
        var parameters: [String: Any] = [:]
        for (key, value) in request.parameters where declared.contains(key.lowercased()) { parameters[key] = ["value": value] }
        let path = "/subscriptions/\(request.vm.lab.subscriptionId)/resourcegroups/\(request.vm.lab.resourceGroup)/providers/Microsoft.Resources/deployments/\(request.deploymentName)"
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.deployments,
                                     body: ["properties": ["mode": "Incremental", "template": template, "parameters": parameters], "tags": request.tags])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.deployments))
    }

    public func getVirtualMachine(_ id: VirtualMachineID) async throws -> LabVirtualMachine {
        let json = try await armJSON(id.resourceId, apiVersion: AzureAPIVersions.devTestLabs, query: [("$expand", Self.vmExpand)])
        return Self.labVM(json, lab: id.lab)
    }

    public func listVirtualMachines(lab: LabID) async throws -> [LabVirtualMachine] {
        try await armList("\(lab.resourceId)/virtualmachines", apiVersion: AzureAPIVersions.devTestLabs, query: [("$expand", Self.vmExpand)])
            .map { Self.labVM($0, lab: lab) }
    }

    static func labVM(_ json: [String: Any], lab: LabID) -> LabVirtualMachine {
        let properties = json["properties"] as? [String: Any] ?? [:]
        let computeStatuses = (properties["computeVm"] as? [String: Any])?["statuses"] as? [[String: Any]] ?? []
        let powerCode = computeStatuses.compactMap { $0["code"] as? String }.first { $0.lowercased().hasPrefix("powerstate/") }
        let powerState = PowerState(powerCode ?? properties["lastKnownPowerState"] as? String ?? "")
        let osType = (properties["osType"] as? String).flatMap(OSType.init(caseInsensitive:))
        let artifacts = (properties["artifacts"] as? [[String: Any]] ?? []).map { a -> ArtifactResult in
            let name = (a["artifactId"] as? String).map(ArtifactReference.shortName(of:)) ?? a["artifactTitle"] as? String ?? ""
            return ArtifactResult(name: name, status: a["status"] as? String ?? "Pending", message: a["deploymentStatusMessage"] as? String)
        }
        // Generalized: the OS's generalize artifact (sysprep / deprovision) ran to success.
        let generalized = osType.map { os in artifacts.contains { $0.name.lowercased() == os.generalizeArtifact && $0.status.lowercased() == "succeeded" } } ?? false
        return LabVirtualMachine(
            id: VirtualMachineID(lab: lab, name: json["name"] as? String ?? ""),
            provisioningState: ProvisioningState(properties["provisioningState"] as? String ?? "Creating"),
            powerState: powerState, osType: osType, tags: tags(json), artifacts: artifacts,
            createdAt: date(properties["createdDate"] as? String) ?? Date(timeIntervalSince1970: 0), generalized: generalized)
    }

    public func updateVirtualMachineTags(_ id: VirtualMachineID, tags: [String: String]) async throws {
        try await arm("PATCH", id.resourceId, apiVersion: AzureAPIVersions.devTestLabs, body: ["tags": tags])
    }

    public func stopVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        handle(try await arm("POST", "\(id.resourceId)/stop", apiVersion: AzureAPIVersions.devTestLabs), resourceURL: nil)
    }

    public func startVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        handle(try await arm("POST", "\(id.resourceId)/start", apiVersion: AzureAPIVersions.devTestLabs), resourceURL: nil)
    }

    public func deleteVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        handle(try await arm("DELETE", id.resourceId, apiVersion: AzureAPIVersions.devTestLabs), resourceURL: nil)
    }

    // MARK: Exporting the OS disk

    /// The compute disk behind a lab VM (`computeVm.osDiskId`), which lives in the lab's VM resource group.
    func osDiskID(_ id: VirtualMachineID) async throws -> String {
        let json = try await armJSON(id.resourceId, apiVersion: AzureAPIVersions.devTestLabs, query: [("$expand", "properties($expand=computeVm)")])
        guard let disk = Self.string(json, "properties", "computeVm", "osDiskId"), !disk.isEmpty else {
            throw CloudError(status: 409, code: "OperationNotAllowed", message: "The lab VM \(id) has no OS disk yet (computeVm.osDiskId is empty).")
        }
        return disk
    }

    public func beginDiskExport(_ id: VirtualMachineID, to destination: BlobID, accessSeconds: Double) async throws -> DiskExport {
        let disk = try await osDiskID(id)
        let response = try await arm("POST", "\(disk)/beginGetAccess", apiVersion: AzureAPIVersions.disks,
                                     body: ["access": "Read", "durationInSeconds": Int(accessSeconds.rounded(.up))])
        let sas = try await accessSAS(response)
        let started = try await startCopy(sourceURL: sas, to: destination)
        return DiskExport(vm: id, destination: destination, started: started)
    }

    /// Waits for `beginGetAccess` and reads its `accessSAS`: from the body when it answered at once,
    /// from the `Location` result, or from the async operation's `properties.output`.
    func accessSAS(_ response: HTTPResponseData) async throws -> String {
        if response.status == 200, let sas = (try? Self.object(response))?["accessSAS"] as? String { return sas }
        var delay = AzureHTTPClient.retryAfter(response) ?? 1
        let location = response.header("Location")
        let async = response.header("Azure-AsyncOperation")
        for _ in 0..<720 {
            try await http.clock.sleep(seconds: min(delay, 10))
            if let location, let url = URL(string: location) {
                let answer = try await arm("GET", url: url)
                if answer.status == 202 { delay = AzureHTTPClient.retryAfter(answer) ?? delay; continue }
                if let sas = (try? Self.object(answer))?["accessSAS"] as? String { return sas }
                throw CloudError(status: 502, code: "InvalidResponse", message: "beginGetAccess ended without an accessSAS.")
            } else if let async, let url = URL(string: async) {
                let answer = try await arm("GET", url: url)
                let json = try Self.object(answer)
                let status = (json["status"] as? String ?? "").lowercased()
                if status == "succeeded" {
                    if let sas = Self.string(json, "properties", "output", "accessSAS") { return sas }
                    throw CloudError(status: 502, code: "InvalidResponse", message: "beginGetAccess succeeded without an accessSAS.")
                }
                if ["failed", "canceled"].contains(status) { throw Self.operationError(json, status: status) }
                delay = AzureHTTPClient.retryAfter(answer) ?? delay
            } else {
                throw CloudError(status: 502, code: "InvalidResponse", message: "beginGetAccess answered \(response.status) with neither a result nor a status URL.")
            }
        }
        throw CloudError(status: 408, code: "OperationTimedOut", message: "beginGetAccess did not finish.")
    }

    public func endDiskExport(_ export: DiskExport) async throws -> OperationHandle {
        let disk = try await osDiskID(export.vm)
        return handle(try await arm("POST", "\(disk)/endGetAccess", apiVersion: AzureAPIVersions.disks), resourceURL: nil)
    }

    // MARK: Custom images

    public func createCustomImage(_ request: CustomImageRequest) async throws -> OperationHandle {
        let path = "\(request.id.lab.resourceId)/customimages/\(request.id.name)"
        let vhdURL = try await blobURL(request.vhd)
        let response = try await arm("PUT", path, apiVersion: AzureAPIVersions.devTestLabs, body: [
            "tags": request.tags,
            "properties": ["vhd": ["imageName": vhdURL.absoluteString, "sysPrep": request.sysprep, "osType": request.osType.rawValue],
                           "description": request.description, "author": request.author],
        ])
        return handle(response, resourceURL: try armURL(path, apiVersion: AzureAPIVersions.devTestLabs))
    }

    public func getCustomImage(_ id: CustomImageID) async throws -> CustomImage {
        Self.customImage(try await armJSON("\(id.lab.resourceId)/customimages/\(id.name)", apiVersion: AzureAPIVersions.devTestLabs), lab: id.lab)
    }

    public func listCustomImages(lab: LabID) async throws -> [CustomImage] {
        try await armList("\(lab.resourceId)/customimages", apiVersion: AzureAPIVersions.devTestLabs).map { Self.customImage($0, lab: lab) }
    }

    static func customImage(_ json: [String: Any], lab: LabID) -> CustomImage {
        let properties = json["properties"] as? [String: Any] ?? [:]
        let vhd = properties["vhd"] as? [String: Any] ?? [:]
        return CustomImage(id: CustomImageID(lab: lab, name: json["name"] as? String ?? ""),
                           provisioningState: ProvisioningState(properties["provisioningState"] as? String ?? "Creating"),
                           osType: (vhd["osType"] as? String).flatMap(OSType.init(caseInsensitive:)) ?? .windows,
                           sysprep: vhd["sysPrep"] as? Bool ?? false, description: properties["description"] as? String ?? "",
                           tags: tags(json), createdAt: date(properties["creationDate"] as? String) ?? Date(timeIntervalSince1970: 0),
                           vhd: vhd["imageName"] as? String)
    }

    public func deleteCustomImage(_ id: CustomImageID) async throws -> OperationHandle {
        handle(try await arm("DELETE", "\(id.lab.resourceId)/customimages/\(id.name)", apiVersion: AzureAPIVersions.devTestLabs), resourceURL: nil)
    }

    // MARK: Deployment history

    public func listDeployments(subscriptionId: String, resourceGroup: String) async throws -> [Deployment] {
        try await armList("/subscriptions/\(subscriptionId)/resourcegroups/\(resourceGroup)/providers/Microsoft.Resources/deployments",
                          apiVersion: AzureAPIVersions.deployments).map { json in
            Deployment(subscriptionId: subscriptionId, resourceGroup: resourceGroup, name: json["name"] as? String ?? "",
                       provisioningState: ProvisioningState(Self.string(json, "properties", "provisioningState") ?? "Succeeded"),
                       timestamp: Self.date(Self.string(json, "properties", "timestamp")) ?? Date(timeIntervalSince1970: 0))
        }
    }

    /// Deletes a deployment record (ARM finishes it in the background; nothing waits on it).
    public func deleteDeployment(subscriptionId: String, resourceGroup: String, name: String) async throws {
        do {
            try await arm("DELETE", "/subscriptions/\(subscriptionId)/resourcegroups/\(resourceGroup)/providers/Microsoft.Resources/deployments/\(name)",
                          apiVersion: AzureAPIVersions.deployments)
        } catch let error as CloudError where error.isNotFound {
            return
        }
    }
}

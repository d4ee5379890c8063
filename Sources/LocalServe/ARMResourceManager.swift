import FactoryModel
import Foundation
import LocalCloud

/// Microsoft.Resources deployments (golden-image templates deployed into a lab's resource group)
/// and Microsoft.Storage accounts (each lab's storage account, with keys and endpoints).
extension LocalServeService {
    // MARK: Deployments

    func deploymentJSON(_ d: Deployment) -> JSONValue {
        let id = "/subscriptions/\(d.subscriptionId)/resourceGroups/\(d.resourceGroup)/providers/Microsoft.Resources/deployments/\(d.name)"
        return ["id": .string(id), "name": .string(d.name), "type": "Microsoft.Resources/deployments",
                "properties": ["provisioningState": .string(d.provisioningState.rawValue), "timestamp": .string(d.timestamp.ISO8601Format()),
                               "mode": "Incremental", "correlationId": .string(Self.uniqueIdentifier(id))]]
    }

    func listDeployments(_ request: ServeRequest, sub: String, rg: String) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let deployments = try await cloud.listDeployments(subscriptionId: sub, resourceGroup: rg).sorted { $0.timestamp < $1.timestamp }
        return page(request, deployments.map(deploymentJSON))
    }

    func deployment(_ request: ServeRequest, sub: String, rg: String, name: String) async throws -> ServeResponse {
        func find() async throws -> Deployment {
            guard let d = try await cloud.listDeployments(subscriptionId: sub, resourceGroup: rg).first(where: { $0.name.lowercased() == name.lowercased() }) else {
                throw CloudError(status: 404, code: "DeploymentNotFound", message: "Deployment '\(name)' could not be found.")
            }
            return d
        }
        switch request.method {
        case "GET":
            return .json(200, deploymentJSON(try await find()))
        case "DELETE":
            do {
                try await cloud.deleteDeployment(subscriptionId: sub, resourceGroup: rg, name: name)
            } catch let error as CloudError where error.status == 404 {
                return ServeResponse(status: 204)
            }
            return ServeResponse(status: 200)
        case "PUT":
            return try await createDeployment(request, sub: sub, rg: rg, name: name)
        default:
            return Self.methodNotAllowed(request, "GET, PUT and DELETE")
        }
    }

    /// `PUT .../deployments/{name}` with a golden-image template: the template's
    /// `Microsoft.DevTestLab/labs/virtualmachines` resource is created in the lab named by the
    /// `labName` parameter, called `newVMName`, as the factory's templates are written. The local
    /// cloud does not evaluate ARM template expressions, so those two parameters are required.
    func createDeployment(_ request: ServeRequest, sub: String, rg: String, name: String) async throws -> ServeResponse {
        guard let body = request.json, let properties = body["properties"], let template = properties["template"] else {
            return .armError(400, "InvalidRequestContent", "The request content needs properties.template (templateLink is not supported by the local cloud).")
        }
        var parameters: [String: String] = [:]
        for (key, value) in properties["parameters"]?.object ?? [:] {
            if let v = value["value"] { parameters[key] = v.string ?? String(decoding: v.data, as: UTF8.self) }
        }
        func parameter(_ key: String) -> String? { parameters.first { $0.key.lowercased() == key.lowercased() }?.value }
        guard let vmName = parameter("newVMName"), let labName = parameter("labName") else {
            return .armError(400, "InvalidTemplate", "Deployment template validation failed: the local cloud deploys golden-image templates and needs the parameters 'newVMName' and 'labName'.")
        }
        let vm = VirtualMachineID(lab: LabID(subscriptionId: sub, resourceGroup: rg, name: labName), name: vmName)
        var artifacts: [ArtifactReference] = []
        for resource in template["resources"]?.array ?? [] where resource["type"]?.string?.lowercased() == "microsoft.devtestlab/labs/virtualmachines" {
            for artifact in resource["properties"]?["artifacts"]?.array ?? [] {
                guard let artifactID = artifact["artifactId"]?.string else { continue }
                let ps = (artifact["parameters"]?.array ?? []).compactMap { p -> ArtifactParameter? in
                    guard let n = p["name"]?.string else { return nil }
                    return ArtifactParameter(name: n, value: p["value"].map { $0.string ?? String(decoding: $0.data, as: UTF8.self) } ?? "")
                }
                artifacts.append(ArtifactReference(artifactId: artifactID, parameters: ps))
            }
        }
        _ = try await cloud.getLab(vm.lab)  // a missing lab is a 404 before anything starts
        let handle = try await cloud.deployVirtualMachine(VMDeploymentRequest(
            vm: vm, template: template.data, parameters: parameters, artifacts: artifacts, tags: body["tags"]?.stringMap ?? [:], deploymentName: name))
        guard let created = try await cloud.listDeployments(subscriptionId: sub, resourceGroup: rg).first(where: { $0.name.lowercased() == name.lowercased() }) else {
            throw CloudError(status: 500, code: "InternalServerError", message: "The deployment '\(name)' was started but cannot be found.")
        }
        // ARM answers a deployment PUT with 201 and an Azure-AsyncOperation URL under the deployment.
        let apiVersion = request.query("api-version") ?? ""
        let statusURL = "\(request.origin)/subscriptions/\(sub)/resourcegroups/\(rg)/providers/Microsoft.Resources/deployments/\(name)/operationStatuses/\(handle.id ?? "done")?api-version=\(apiVersion)"
        return .json(201, deploymentJSON(created), headers: [("Azure-AsyncOperation", statusURL), ("Retry-After", String(RetryAfter.seconds(handle.retryAfter)))])
    }

    // MARK: Storage accounts

    func storageAccountJSON(_ account: StorageAccountID, location: String, createdAt: Date, origin: String) -> JSONValue {
        let base = "\(origin)/\(account.name)/"
        return ["id": .string(account.resourceId), "name": .string(account.name), "type": "Microsoft.Storage/storageAccounts",
                "location": .string(location), "kind": "StorageV2", "sku": ["name": "Standard_LRS", "tier": "Standard"], "tags": [:],
                "properties": ["provisioningState": "Succeeded", "creationTime": .string(createdAt.ISO8601Format()),
                               "primaryLocation": .string(location), "statusOfPrimary": "available",
                               "primaryEndpoints": ["blob": .string(base)], "supportsHttpsTrafficOnly": false,
                               "allowBlobPublicAccess": false, "minimumTlsVersion": "TLS1_2", "accessTier": "Hot"]]
    }

    func listStorageAccounts(_ request: ServeRequest, sub: String, rg: String?) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        let accounts = try await cloud.listStorageAccounts(subscriptionId: sub)
            .filter { rg == nil || $0.account.resourceGroup.lowercased() == rg!.lowercased() }
        return page(request, accounts.map { storageAccountJSON($0.account, location: $0.location, createdAt: $0.createdAt, origin: request.origin) })
    }

    func storageAccount(_ request: ServeRequest, _ p: [String: String], action: String?) async throws -> ServeResponse {
        let name = p["name"]!
        guard let found = try await cloud.listStorageAccounts(subscriptionId: p["sub"]!)
            .first(where: { $0.account.name.lowercased() == name.lowercased() && $0.account.resourceGroup.lowercased() == p["rg"]!.lowercased() }) else {
            return .armError(404, "ResourceNotFound", "The Resource 'Microsoft.Storage/storageAccounts/\(name)' under resource group '\(p["rg"]!)' was not found.")
        }
        switch (request.method, action?.lowercased()) {
        case ("GET", nil):
            return .json(200, storageAccountJSON(found.account, location: found.location, createdAt: found.createdAt, origin: request.origin))
        case ("POST", "listkeys"):
            let keys = LocalCloud.storageAccountKeys(found.account)
            return .json(200, ["keys": [["keyName": "key1", "value": .string(keys[0]), "permissions": "FULL"],
                                        ["keyName": "key2", "value": .string(keys[1]), "permissions": "FULL"]]])
        default:
            return Self.methodNotAllowed(request, "GET on the account and POST listKeys (accounts come with their labs)")
        }
    }
}

import FactoryModel
import Foundation
import LocalCloud

/// The compute VM and OS disk behind each lab VM, as `Microsoft.Compute/virtualMachines` and
/// `Microsoft.Compute/disks`. The mapping: a lab declares its own resource group as
/// `vmCreationResourceGroup`, so lab VM `{vm}` of a lab in resource group `{rg}` has the compute VM
/// `{rg}/virtualMachines/{vm}` (its `computeId`) with OS disk `{rg}/disks/{vm}_OsDisk`. The VMs
/// are views of the lab VMs (read-only here: power changes go through DevTest Labs); the disk offers
/// `beginGetAccess` / `endGetAccess`, whose SAS URL is served on this port (see `DiskAccessURL`).
/// If two labs of one resource group hold VMs of the same name (Azure would refuse the second),
/// the lab first by name wins.
extension LocalServeService {
    static let osDiskSuffix = "_OsDisk"

    static func computeVMResourceID(_ lab: LabID, _ vmName: String) -> String {
        "/subscriptions/\(lab.subscriptionId)/resourceGroups/\(lab.resourceGroup)/providers/Microsoft.Compute/virtualMachines/\(vmName)"
    }

    static func diskResourceID(_ lab: LabID, _ vmName: String) -> String {
        "/subscriptions/\(lab.subscriptionId)/resourceGroups/\(lab.resourceGroup)/providers/Microsoft.Compute/disks/\(vmName)\(osDiskSuffix)"
    }

    /// Whole GiB, at least 1, as `diskSizeGB` (the exact size is in `diskSizeBytes`).
    static func diskSizeGB(_ bytes: Int64) -> Int {
        max(1, Int((bytes + (1 << 30) - 1) >> 30))
    }

    // MARK: Finding the lab VM behind a compute resource

    /// The lab VMs seen as compute VMs in a subscription, or one of its resource groups.
    func computeVMs(sub: String, rg: String?) async throws -> [(lab: Lab, vm: LabVirtualMachine)] {
        let labs = try await cloud.listLabs(subscriptionId: sub)
            .filter { rg == nil || $0.id.resourceGroup.lowercased() == rg!.lowercased() }
            .sorted { $0.id.name.lowercased() < $1.id.name.lowercased() }
        var result: [(lab: Lab, vm: LabVirtualMachine)] = []
        for lab in labs {
            for vm in try await cloud.listVirtualMachines(lab: lab.id).sorted(by: { $0.id.name.lowercased() < $1.id.name.lowercased() }) {
                result.append((lab, vm))
            }
        }
        return result
    }

    func computeVMNamed(sub: String, rg: String, name: String, type: String, resourceName: String) async throws -> (lab: Lab, vm: LabVirtualMachine) {
        guard let found = try await computeVMs(sub: sub, rg: rg).first(where: { $0.vm.id.name.lowercased() == name.lowercased() }) else {
            throw CloudError(status: 404, code: "ResourceNotFound",
                             message: "The Resource '\(type)/\(resourceName)' under resource group '\(rg)' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        }
        return found
    }

    // MARK: Virtual machines

    func computeStatuses(_ vm: LabVirtualMachine) -> JSONValue {
        let provisioning = vm.provisioningState.rawValue.lowercased()
        let power = vm.powerState.rawValue.lowercased()
        var statuses: [JSONValue] = [["code": .string("ProvisioningState/\(provisioning)"), "level": provisioning == "failed" ? "Error" : "Info",
                                      "displayStatus": .string("Provisioning \(provisioning)"), "time": .string(vm.createdAt.ISO8601Format())]]
        if vm.provisioningState != "Creating" {
            statuses.append(["code": .string("PowerState/\(power)"), "level": "Info", "displayStatus": .string("VM \(power)")])
        }
        return .array(statuses)
    }

    func computeInstanceViewJSON(_ vm: LabVirtualMachine) -> JSONValue {
        let diskStatus: JSONValue = ["code": .string("ProvisioningState/\(vm.provisioningState.rawValue.lowercased())"), "level": "Info",
                                     "displayStatus": .string("Provisioning \(vm.provisioningState.rawValue.lowercased())")]
        return ["computerName": .string(vm.id.name), "osName": .string(vm.osType?.rawValue ?? ""), "hyperVGeneration": "V1",
                "disks": [["name": .string(vm.id.name + Self.osDiskSuffix), "statuses": [diskStatus]]],
                "statuses": computeStatuses(vm)]
    }

    func computeVMJSON(_ lab: Lab, _ vm: LabVirtualMachine, instanceView: Bool) -> JSONValue {
        let os = vm.osType ?? .linux
        let sizeGB = Self.diskSizeGB(os == .windows ? cloud.settings.latency.windowsDiskBytes : cloud.settings.latency.linuxDiskBytes)
        let osProfile: JSONValue = os == .windows
            ? ["computerName": .string(vm.id.name), "adminUsername": "factory",
               "windowsConfiguration": ["provisionVMAgent": true, "enableAutomaticUpdates": true]]
            : ["computerName": .string(vm.id.name), "adminUsername": "factory",
               "linuxConfiguration": ["disablePasswordAuthentication": false, "provisionVMAgent": true]]
        var properties: [String: JSONValue] = [
            "vmId": .string(Self.uniqueIdentifier(Self.computeVMResourceID(lab.id, vm.id.name))),
            "hardwareProfile": ["vmSize": "Standard_DS2_v2"],
            "storageProfile": [
                "osDisk": ["osType": .string(os.rawValue), "name": .string(vm.id.name + Self.osDiskSuffix), "createOption": "FromImage",
                           "caching": "ReadWrite", "deleteOption": "Delete", "diskSizeGB": .number(Double(sizeGB)),
                           "managedDisk": ["id": .string(Self.diskResourceID(lab.id, vm.id.name)), "storageAccountType": "Standard_LRS"]],
                "dataDisks": [],
            ],
            "osProfile": osProfile,
            "networkProfile": ["networkInterfaces": [["id": .string("/subscriptions/\(lab.id.subscriptionId)/resourceGroups/\(lab.id.resourceGroup)/providers/Microsoft.Network/networkInterfaces/\(vm.id.name)")]]],
            "provisioningState": .string(vm.provisioningState.rawValue),
            "timeCreated": .string(vm.createdAt.ISO8601Format()),
        ]
        if instanceView { properties["instanceView"] = computeInstanceViewJSON(vm) }
        var tags = vm.tags
        tags["hidden-DevTestLabs-LabUId"] = Self.uniqueIdentifier(lab.id.resourceId)
        tags["hidden-DevTestLabs-LogicalResourceUId"] = Self.uniqueIdentifier(vm.id.resourceId)
        return ["id": .string(Self.computeVMResourceID(lab.id, vm.id.name)), "name": .string(vm.id.name),
                "type": "Microsoft.Compute/virtualMachines", "location": .string(lab.location), "tags": .strings(tags),
                "properties": .object(properties)]
    }

    func listComputeVMs(_ request: ServeRequest, sub: String, rg: String?) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        return page(request, try await computeVMs(sub: sub, rg: rg).map { computeVMJSON($0.lab, $0.vm, instanceView: false) })
    }

    func computeVM(_ request: ServeRequest, _ p: [String: String], action: String? = nil) async throws -> ServeResponse {
        let found = try await computeVMNamed(sub: p["sub"]!, rg: p["rg"]!, name: p["name"]!, type: "Microsoft.Compute/virtualMachines", resourceName: p["name"]!)
        switch (request.method, action?.lowercased()) {
        case ("GET", nil):
            let expand = (request.query("$expand") ?? "").lowercased()
            return .json(200, computeVMJSON(found.lab, found.vm, instanceView: expand.contains("instanceview")))
        case ("GET", "instanceview"):
            return .json(200, computeInstanceViewJSON(found.vm))
        case (_, nil):
            return Self.methodNotAllowed(request, "GET (the compute VM is a view of lab VM '\(found.vm.id.name)'; change it through Microsoft.DevTestLab/labs/\(found.lab.id.name)/virtualmachines)")
        default:
            return .armError(404, "NotFound", "The local cloud serves GET .../virtualMachines/{name}/instanceView; '\(request.method) \(action ?? "")' is not emulated (start and stop lab VMs through DevTest Labs).")
        }
    }

    // MARK: Disks

    func diskJSON(_ lab: Lab, _ disk: ManagedDiskView) -> JSONValue {
        let id = Self.diskResourceID(lab.id, disk.vm.name)
        return ["id": .string(id), "name": .string(disk.vm.name + Self.osDiskSuffix), "type": "Microsoft.Compute/disks",
                "location": .string(lab.location), "tags": [:],
                "managedBy": .string(Self.computeVMResourceID(lab.id, disk.vm.name)),
                "sku": ["name": "Standard_LRS", "tier": "Standard"],
                "properties": [
                    "osType": .string(disk.osType.rawValue), "hyperVGeneration": "V1",
                    "creationData": ["createOption": "FromImage"],
                    "diskSizeGB": .number(Double(Self.diskSizeGB(disk.sizeBytes))), "diskSizeBytes": .number(Double(disk.sizeBytes)),
                    "uniqueId": .string(Self.uniqueIdentifier(id)), "provisioningState": .string(disk.provisioningState),
                    "diskState": .string(disk.diskState), "timeCreated": .string(disk.createdAt.ISO8601Format()),
                    "encryption": ["type": "EncryptionAtRestWithPlatformKey"], "networkAccessPolicy": "AllowAll",
                    "publicNetworkAccess": "Enabled", "diskIOPSReadWrite": 500, "diskMBpsReadWrite": 60,
                ]]
    }

    func listDisks(_ request: ServeRequest, sub: String, rg: String?) async throws -> ServeResponse {
        guard request.method == "GET" else { return Self.methodNotAllowed(request, "GET") }
        var items: [JSONValue] = []
        for (lab, vm) in try await computeVMs(sub: sub, rg: rg) {
            items.append(diskJSON(lab, try await cloud.managedDisk(vm.id)))
        }
        return page(request, items)
    }

    func disk(_ request: ServeRequest, _ p: [String: String], action: String?) async throws -> ServeResponse {
        let name = p["name"]!
        let notFound = CloudError(status: 404, code: "ResourceNotFound",
                                  message: "The Resource 'Microsoft.Compute/disks/\(name)' under resource group '\(p["rg"]!)' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        guard name.lowercased().hasSuffix(Self.osDiskSuffix.lowercased()), name.count > Self.osDiskSuffix.count else { throw notFound }
        let vmName = String(name.dropLast(Self.osDiskSuffix.count))
        let found: (lab: Lab, vm: LabVirtualMachine)
        do {
            found = try await computeVMNamed(sub: p["sub"]!, rg: p["rg"]!, name: vmName, type: "Microsoft.Compute/disks", resourceName: name)
        } catch let error as CloudError where error.isNotFound {
            throw notFound
        }
        let (lab, vm) = found
        switch (request.method, action?.lowercased()) {
        case ("GET", nil):
            return .json(200, diskJSON(lab, try await cloud.managedDisk(vm.id)))
        case ("POST", "begingetaccess"):
            guard let body = request.json else {
                return .armError(400, "InvalidRequestContent", "The request content is not valid JSON: give {\"access\": \"Read\", \"durationInSeconds\": N}.")
            }
            guard let access = body["access"]?.string else {
                return .armError(400, "InvalidParameter", "Required parameter 'access' is missing (null). Give \"Read\".")
            }
            guard access.lowercased() == "read" else {
                if access.lowercased() == "write" {
                    return .armError(409, "OperationNotAllowed", "Write access is granted only to disks created for upload; disk '\(name)' is an OS disk.")
                }
                return .armError(400, "InvalidParameter", "The value '\(access)' of parameter 'access' is invalid: the local cloud grants \"Read\".")
            }
            guard let duration = body["durationInSeconds"]?.int, duration >= 1 else {
                return .armError(400, "InvalidParameter", "Required parameter 'durationInSeconds' is missing or not a positive integer.")
            }
            let (handle, _) = try await cloud.grantDiskAccess(vm.id, duration: Double(duration))
            let final = "\(request.rawPath.dropLast(action!.count))accessSAS?api-version=\(request.query("api-version") ?? "")"
            return started(request, handle, status: 202, body: nil, provider: Self.computeProvider, location: lab.location,
                           finalTarget: final, headers: .both)
        case ("GET", "accesssas"):
            // The final result of beginGetAccess, which its Location URL answers with.
            guard let grant = try await cloud.diskAccess(vm.id) else {
                return .armError(409, "OperationNotAllowed", "Disk '\(name)' has no active access: call beginGetAccess first (or it was revoked or expired).")
            }
            return .json(200, ["accessSAS": .string(DiskAccessURL.make(origin: request.origin, grant: grant))])
        case ("POST", "endgetaccess"):
            let handle = try await cloud.revokeDiskAccess(vm.id)
            return started(request, handle, status: 202, body: nil, provider: Self.computeProvider, location: lab.location,
                           finalTarget: nil, headers: .both)
        case (_, nil):
            return Self.methodNotAllowed(request, "GET (the OS disk of lab VM '\(vm.id.name)' is created and deleted with it)")
        default:
            return .armError(404, "NotFound", "The local cloud serves POST .../disks/{name}/beginGetAccess and endGetAccess; '\(request.method) \(action ?? "")' is not emulated.")
        }
    }
}

/// The SAS URL of a disk's granted access, served on this port as a read-only blob, path-style:
/// `{origin}/md-{id prefix}/{id}/abcd?sv=...&sr=b&si={id}&sig={signature}`, as Azure's
/// `https://md-....blob.storage.azure.net/{id}/abcd?...` (storage account names cannot contain `-`,
/// so `md-` never names a lab's account). It works until the access is revoked or expires.
enum DiskAccessURL {
    static let accountPrefix = "md-"

    static func make(origin: String, grant: DiskAccessGrant) -> String {
        let expiry = grant.expiresAt.ISO8601Format()
        let se = expiry.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expiry
        return "\(origin)/\(accountPrefix)\(grant.id.prefix(12))/\(grant.id)/abcd?sv=2018-03-28&sr=b&si=\(grant.id)&se=\(se)&sp=r&sig=\(grant.signature)"
    }

    /// The access id and signature of a disk SAS URL, or nil when the URL is not one.
    static func parse(_ uri: String) -> (id: String, signature: String)? {
        guard let url = URLComponents(string: uri), url.host != nil else { return nil }
        let segments = url.path.split(separator: "/").map(String.init)
        return parse(segments: segments, signature: url.queryItems?.first { $0.name == "sig" }?.value)
    }

    static func parse(segments: [String], signature: String?) -> (id: String, signature: String)? {
        guard segments.count == 3, segments[0].lowercased().hasPrefix(accountPrefix) else { return nil }
        return (segments[1], signature ?? "")
    }
}

extension LocalServeService {
    /// GET / HEAD on a disk's SAS URL: the exported VHD as a page blob, with ranges. No bearer token
    /// (the SAS is the credential); a revoked, expired or wrong SAS is 403.
    func diskAccessBlob(_ request: ServeRequest) async -> ServeResponse {
        var response: ServeResponse
        do {
            response = try await diskAccessBlobResponse(request)
        } catch let error as CloudError {
            response = BlobService.error(error.status, error.code, error.message)
        } catch {
            response = BlobService.error(500, "InternalError", "The local cloud failed: \(error)")
        }
        if let version = request.header("x-ms-version") { response.setHeader("x-ms-version", version) }
        return response
    }

    private func diskAccessBlobResponse(_ request: ServeRequest) async throws -> ServeResponse {
        guard let (id, signature) = DiskAccessURL.parse(segments: request.segments, signature: request.query("sig")) else {
            throw CloudError(status: 404, code: "ResourceNotFound", message: "The disk access URL '\(request.rawPath)' names no disk.")
        }
        let content = try await cloud.diskAccessContent(id: id, signature: signature)
        guard request.method == "GET" || request.method == "HEAD" else {
            throw CloudError(status: 403, code: "AuthorizationPermissionMismatch", message: "This request is not authorized to perform this operation using this permission: the disk's SAS grants read.")
        }
        var headers: [(name: String, value: String)] = [
            ("Content-Type", "application/octet-stream"), ("ETag", BlobService.etag(content.grantedAt)),
            ("Last-Modified", HTTPDate.format(content.grantedAt)), ("x-ms-creation-time", HTTPDate.format(content.grantedAt)),
            ("x-ms-blob-type", "PageBlob"), ("x-ms-blob-sequence-number", "0"), ("x-ms-lease-status", "unlocked"),
            ("x-ms-lease-state", "available"), ("x-ms-server-encrypted", "true"), ("Accept-Ranges", "bytes"),
        ]
        if let md5 = content.md5 { headers.append(("Content-MD5", md5)) }
        if request.method == "HEAD" {
            return ServeResponse(status: 200, headers: headers + [("Content-Length", String(content.size))])
        }
        var start: Int64 = 0
        var end: Int64 = content.size - 1
        var partial = false
        if let range = request.header("x-ms-range") ?? request.header("Range") {
            guard let (s, e) = BlobService.parseRange(range, size: Int(content.size)) else {
                return BlobService.error(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
            }
            (start, end, partial) = (Int64(s), Int64(e), true)
        }
        let handle = try FileHandle(forReadingFrom: content.file)
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(start))
        let data = try handle.read(upToCount: Int(end - start + 1)) ?? Data()
        guard partial else { return ServeResponse(status: 200, headers: headers, body: data) }
        headers.removeAll { $0.name == "Content-MD5" }
        headers.append(("Content-Range", "bytes \(start)-\(end)/\(content.size)"))
        return ServeResponse(status: 206, headers: headers, body: data)
    }
}

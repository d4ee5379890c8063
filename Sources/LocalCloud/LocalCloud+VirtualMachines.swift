import FactoryModel
import Foundation
import GRDB

// The local cloud's virtual machines provider.
extension LocalCloud {
    public func deployVirtualMachine(_ request: VMDeploymentRequest) async throws -> OperationHandle {
        let id = request.vm
        let template = try Self.templateVM(request.template)
        let osType = template.osType
        if let error = AzureNameRules.virtualMachineNameError(id.name, osType: osType) { throw error }
        var planned: [PlannedArtifact] = []
        for artifact in request.artifacts {
            var failure: String?
            if artifact.name.lowercased().hasSuffix("-fails") {
                failure = "Artifact '\(artifact.name)' failed: the script exited with code 1."
            } else if await injected(.deploy, id.resourceId + "/" + artifact.name, "artifactFailure") {
                failure = "Artifact '\(artifact.name)' failed: the extension returned a non-zero exit code (injected fault)."
            }
            planned.append(PlannedArtifact(name: artifact.name, parameters: artifact.parameters, failure: failure))
        }
        let provisioningFails = await injected(.deploy, id.resourceId, "operationFailure")
        let plannedArtifacts = planned
        let latency = settings.latency
        let maxDeployments = settings.maxDeploymentsPerResourceGroup
        return try await perform("deployVirtualMachine", kind: .deploy, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                _ = try self.lab(db, id.lab)
                let vmKey = LocalCloud.vmKey(id)
                if try db.record("vm", vmKey, as: VMRecord.self) != nil {
                    throw CloudError(status: 409, code: "Conflict", message: "A virtual machine named '\(id.name)' already exists in lab '\(id.lab.name)'.")
                }
                let rg = LocalCloud.rgKey(id.lab.subscriptionId, id.lab.resourceGroup)
                let deploymentKey = rg + "/" + request.deploymentName.lowercased()
                if try db.record("deployment", deploymentKey, as: DeploymentRecord.self) == nil,
                   try db.count("deployment", parent: rg) >= maxDeployments {
                    throw CloudError(status: 409, code: "DeploymentQuotaExceeded",
                                     message: "Creating the deployment '\(request.deploymentName)' would exceed the quota of '\(maxDeployments)'. The current deployment count is '\(maxDeployments)'. Please delete some deployments before creating a new one.")
                }
                let now = self.clock.now()
                let readyAt = now.addingTimeInterval(template.buildSeconds ?? (latency.deployment + latency.artifact * Double(plannedArtifacts.count)))
                let anyFailure = plannedArtifacts.contains { $0.failure != nil } || provisioningFails
                let generalizes = !anyFailure && plannedArtifacts.last.map { ["windows-sysprep", "linux-deprovision"].contains($0.name.lowercased()) } == true
                var events = [PowerEvent(at: readyAt, state: "Running")]
                var generalizedAt: Date?
                if generalizes {
                    // Sysprep / deprovision shut the VM down, and DevTest Labs deallocates it.
                    events.append(PowerEvent(at: readyAt.addingTimeInterval(latency.shutdown * 0.5), state: "Stopping"))
                    generalizedAt = readyAt.addingTimeInterval(latency.shutdown)
                    events.append(PowerEvent(at: generalizedAt!, state: "Deallocated"))
                }
                let record = VMRecord(
                    id: id, osType: osType, tags: request.tags, baseImage: template.baseImage, artifacts: plannedArtifacts, createdAt: now,
                    readyAt: readyAt, provisioningFailure: provisioningFails ? "The deployment failed: InternalServerError (injected fault)." : nil,
                    powerEvents: events, generalizedAt: generalizedAt, deploymentName: request.deploymentName)
                try db.save("vm", vmKey, parent: id.lab.key, record)
                try db.save("deployment", deploymentKey, parent: rg, DeploymentRecord(
                    subscriptionId: id.lab.subscriptionId, resourceGroup: id.lab.resourceGroup, name: request.deploymentName,
                    startedAt: now, completesAt: readyAt, failed: anyFailure))
                let error = anyFailure ? CloudError(status: 200, code: "DeploymentFailed",
                                                    message: "At least one resource deployment operation failed.") : nil
                return try self.operation(db, completesAt: readyAt, error: error)
            }
        }
    }

    struct TemplateVM {
        var osType: OSType
        var baseImage: String
        /// `metadata.localCloud.buildSeconds`: how long this template's VM takes to deploy and run its
        /// artifacts in the local cloud, instead of the latency profile's (heterogeneous factories in tests
        /// and benchmarks: a Windows image with Visual Studio builds for hours, a Linux one in minutes).
        var buildSeconds: Double?
    }

    /// Reads the lab VM resource of a template the way ARM would, rejecting what ARM rejects.
    static func templateVM(_ data: Data) throws -> TemplateVM {
        guard let text = JSONText.decodeText(data), let root = try? JSONText.parse(text) as? [String: Any],
              let resources = JSONText.value(root, "resources") as? [Any] else {
            throw CloudError(status: 400, code: "InvalidTemplate", message: "Deployment template validation failed: the template is not valid JSON with a resources array.")
        }
        for case let resource as [String: Any] in resources {
            guard (JSONText.value(resource, "type") as? String)?.lowercased() == "microsoft.devtestlab/labs/virtualmachines",
                  let properties = JSONText.value(resource, "properties") as? [String: Any] else { continue }
            let gallery = JSONText.value(properties, "galleryImageReference") as? [String: Any] ?? [:]
            let os = (JSONText.value(gallery, "osType") as? String) ?? (JSONText.value(properties, "osType") as? String) ?? ""
            guard let osType = OSType(caseInsensitive: os) else {
                throw CloudError(status: 400, code: "InvalidTemplate", message: "Deployment template validation failed: the virtual machine has no osType.")
            }
            let base = ["publisher", "offer", "sku", "version"].map { (JSONText.value(gallery, $0) as? String) ?? "" }.joined(separator: ":")
            let localCloud = (JSONText.value(root, "metadata") as? [String: Any]).flatMap { JSONText.value($0, "localCloud") as? [String: Any] }
            let buildSeconds = localCloud.flatMap { JSONText.value($0, "buildSeconds") as? Double }
            return TemplateVM(osType: osType, baseImage: base, buildSeconds: buildSeconds)
        }
        throw CloudError(status: 400, code: "InvalidTemplate", message: "Deployment template validation failed: no Microsoft.DevTestLab/labs/virtualmachines resource.")
    }

    public func getVirtualMachine(_ id: VirtualMachineID) async throws -> LabVirtualMachine {
        try await perform("getVirtualMachine", kind: .read, write: false, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.read { db in try self.vm(db, id).view(at: self.clock.now()) }
        }
    }

    func vm(_ db: Database, _ id: VirtualMachineID) throws -> VMRecord {
        guard let record = try db.record("vm", LocalCloud.vmKey(id), as: VMRecord.self) else {
            throw LocalCloud.resourceNotFound("Microsoft.DevTestLab/labs/\(id.lab.name)/virtualmachines/\(id.name)", resourceGroup: id.lab.resourceGroup)
        }
        return record
    }

    public func listVirtualMachines(lab: LabID) async throws -> [LabVirtualMachine] {
        try await perform("listVirtualMachines", kind: .read, write: false, subscription: lab.subscriptionId, lab: lab.name, resource: lab.resourceId + "/virtualmachines") {
            try await self.db.read { db in
                _ = try self.lab(db, lab)
                let now = self.clock.now()
                return try db.records("vm", parent: lab.key, as: VMRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func updateVirtualMachineTags(_ id: VirtualMachineID, tags: [String: String]) async throws {
        try await perform("updateVirtualMachineTags", kind: .vmAction, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                var record = try self.vm(db, id)
                record.tags = tags
                try db.save("vm", LocalCloud.vmKey(id), parent: id.lab.key, record)
            }
        }
    }

    public func stopVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        let shutdown = settings.latency.shutdown
        return try await perform("stopVirtualMachine", kind: .vmAction, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                var record = try self.vm(db, id)
                let now = self.clock.now()
                let view = record.view(at: now)
                guard view.provisioningState == "Succeeded" else {
                    throw CloudError(status: 409, code: "Conflict", message: "The virtual machine '\(id.name)' is \(view.provisioningState.rawValue.lowercased()) and cannot be stopped now.")
                }
                if view.powerState == "Deallocated" { return try self.operation(db, completesAt: now) }
                let done = max(now, record.powerEvents.map(\.at).max() ?? now).addingTimeInterval(shutdown)
                record.powerEvents.append(PowerEvent(at: now, state: "Deallocating"))
                record.powerEvents.append(PowerEvent(at: done, state: "Deallocated"))
                try db.save("vm", LocalCloud.vmKey(id), parent: id.lab.key, record)
                return try self.operation(db, completesAt: done)
            }
        }
    }

    public func startVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        let delay = settings.latency.shutdown
        return try await perform("startVirtualMachine", kind: .vmAction, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                var record = try self.vm(db, id)
                let now = self.clock.now()
                if record.view(at: now).generalized {
                    throw CloudError(status: 409, code: "OperationNotAllowed",
                                     message: "Operation 'start' is not allowed on VM '\(id.name)' since the VM is generalized.")
                }
                try self.checkNoActiveDiskAccess(db, id)
                let done = now.addingTimeInterval(delay)
                record.powerEvents.append(PowerEvent(at: now, state: "Starting"))
                record.powerEvents.append(PowerEvent(at: done, state: "Running"))
                try db.save("vm", LocalCloud.vmKey(id), parent: id.lab.key, record)
                return try self.operation(db, completesAt: done)
            }
        }
    }

    public func deleteVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle {
        let delay = settings.latency.delete
        return try await perform("deleteVirtualMachine", kind: .vmDelete, write: true, subscription: id.lab.subscriptionId, lab: id.lab.name, resource: id.resourceId) {
            try await self.db.write { db in
                _ = try self.vm(db, id)
                try db.remove("vm", LocalCloud.vmKey(id))
                try self.removeDiskAccess(db, id)  // the VM's OS disk goes with it, and any SAS to it
                return try self.operation(db, completesAt: self.clock.now().addingTimeInterval(delay))
            }
        }
    }

    /// Grants read access to the VM's OS disk and starts Copy Blob from its SAS, as the original
    /// factory exported disks. The access stays until `endDiskExport`: revoked earlier, the copy fails.
    public func beginDiskExport(_ id: VirtualMachineID, to destination: BlobID, accessSeconds: Double) async throws -> DiskExport {
        let (_, grant) = try await grantDiskAccess(id, duration: accessSeconds)
        do {
            let started = try await startBlobCopy(fromDiskAccess: grant.id, signature: grant.signature,
                                                  sourceURL: id.resourceId + "/osdisk?sas", to: destination, faultKind: .export)
            return DiskExport(vm: id, destination: destination, started: started)
        } catch {
            _ = try? await revokeDiskAccess(id)
            throw error
        }
    }

    public func endDiskExport(_ export: DiskExport) async throws -> OperationHandle {
        try await revokeDiskAccess(export.vm)
    }
}

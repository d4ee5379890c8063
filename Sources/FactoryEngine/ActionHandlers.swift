import FactoryModel
import Foundation

/// One handler per kind of action: what each does against the backend, through the client.
struct ActionHandlers: Sendable {
    /// How many times a distribution starts its copy before it fails.
    static let copyAttempts = 3

    let client: CloudClient
    let runID: String
    let timeoutSeconds: Double
    let state: ExecutionState
    let events: @Sendable (FactoryEvent) -> Void

    var backend: any CloudBackend { client.backend }
    var clock: any FactoryClock { client.clock }

    func perform(_ action: PlanAction) async throws {
        switch action.operation {
        case .buildVM(let spec): try await build(spec)
        case .replaceStaleVM(let spec), .deleteFactoryVM(let spec): try await deleteVM(spec.vm)
        case .captureImage(let spec): try await capture(spec, actionID: action.id)
        case .distributeImage(let spec): try await distribute(spec, repair: false)
        case .repairImage(let spec): try await distribute(spec, repair: true)
        case .deleteTemporaryBlob(let blob): try await deleteTemporaryBlob(blob)
        case .deleteTemporaryContainer(let container): try await deleteTemporaryContainer(container)
        case .pruneDeployments(let spec): try await pruneDeployments(spec)
        case .retireRecord(let spec): try await retireRecord(spec)
        case .retireImage(let spec): try await retireImage(spec)
        case .ensureGallery(let spec): try await ensureGallery(spec)
        case .ensureImageDefinition(let spec): try await ensureImageDefinition(spec)
        case .publishVersion(let spec): try await publishVersion(spec, actionID: action.id)
        case .retireVersion(let spec): try await retireVersion(spec)
        case .deleteImageDefinition(let spec): try await deleteImageDefinition(spec.definition, factoryTag: spec.factory)
        }
    }

    private func build(_ spec: BuildVMSpec) async throws {
        let backend = self.backend
        let password = Secrets.password()
        events(.secret(password))
        var tags = spec.tags
        tags[FactoryTag.runID] = runID
        var parameters = spec.parameters
        parameters["password"] = password
        let request = VMDeploymentRequest(vm: spec.vm, template: Data(spec.template.utf8), parameters: parameters, artifacts: spec.artifacts,
                                          tags: tags, deploymentName: spec.deploymentName)
        do {
            _ = try await client.call { try await backend.deployVirtualMachine(request) }
        } catch let error as CloudError where error.status == 409 {
            // A retried request whose first attempt did go through (a time-out, a lost answer):
            // the VM is ours if it carries this template's tags; anything else is a real conflict.
            let existing = try? await client.call { try await backend.getVirtualMachine(spec.vm) }
            guard let existing, existing.tags[FactoryTag.templateSha] == spec.templateSha,
                  existing.tags[FactoryTag.runID] == runID else { throw error }
        }
        try await finishBuild(spec.vm, osState: spec.osState)
    }

    /// What follows a deployment, also for a VM adopted from an interrupted run: wait for
    /// provisioning, delete the VM and report each failed artifact if any, stop a specialized
    /// VM, and wait until it is deallocated (sysprep / deprovision shut generalized ones down).
    private func finishBuild(_ vm: VirtualMachineID, osState: OSState) async throws {
        let backend = self.backend
        let timeout = timeoutSeconds
        let provisioned = try await client.poll(timeout: timeout, what: "Deployment of \(vm.name)",
                                                read: { try await backend.getVirtualMachine(vm) }, hint: { $0.retryAfter },
                                                done: { $0.provisioningState.isTerminal })
        if provisioned.provisioningState.hasFailed || !provisioned.failedArtifacts.isEmpty {
            let failures = provisioned.failedArtifacts.map { "\($0.name): \($0.message ?? "failed")" }
            let deletion = try? await client.call { try await backend.deleteVirtualMachine(vm) }
            if let deletion { try? await client.wait(for: deletion, timeout: timeout) }
            throw FactoryError(.workFailed, failures.isEmpty
                ? "VM \(vm.name) failed to provision; it was deleted."
                : "VM \(vm.name) was deleted because artifacts failed: " + failures.joined(separator: "; "))
        }
        if osState == .specialized && !provisioned.isDeallocated && provisioned.powerState != .deallocating {
            let stop = try await client.call { try await backend.stopVirtualMachine(vm) }
            try await client.wait(for: stop, timeout: timeout)
        }
        _ = try await client.poll(timeout: timeout, what: "Shutdown of \(vm.name)", read: { try await backend.getVirtualMachine(vm) },
                                  hint: { $0.retryAfter }, done: { $0.isDeallocated })
    }

    private func capture(_ spec: CaptureSpec, actionID: String) async throws {
        let backend = self.backend
        try await finishBuild(spec.vm, osState: spec.osState)  // a no-op wait for a VM built in this run; the whole finish for an adopted one
        try await ensureContainer(spec.vhd.container)
        // The disk's read access is held until the copy has ended, whatever it ended as: revoked
        // earlier, Azure fails the copy.
        let accessSeconds = timeoutSeconds + 3600
        let export = try await client.call { try await backend.beginDiskExport(spec.vm, to: spec.vhd, accessSeconds: accessSeconds) }
        let copied: BlobProperties
        do {
            copied = try await waitForCopy(spec.vhd, what: "Export of \(spec.vm.name)'s disk")
        } catch {
            await endExport(export)
            throw error
        }
        await endExport(export)
        // Azure does not promise a Content-MD5 for a disk, so the export may have none: then copies
        // are checked by their copy status and size instead (Copy Blob moves bytes faithfully).
        let md5 = copied.contentMD5
        if md5 == nil {
            events(.note("\(spec.imageName): the exported VHD has no Content-MD5; its copies are checked by copy status and size"))
        }
        let record = VhdRecord(imageName: spec.imageName, imagePath: spec.imagePath, description: spec.description, osType: spec.osType,
                               vhdFileName: spec.vhd.name, timestamp: clock.now(), osState: spec.osState, commit: spec.commit,
                               templateBlobSha: spec.templateSha, sizeBytes: copied.contentLength, md5: md5, runId: runID)
        let data = try record.encoded()
        // The record goes last: its presence means the image is complete.
        _ = try await client.call { try await backend.putBlob(spec.record, data: data, metadata: [FactoryTag.imagePath: spec.imagePath]) }
        await state.addCapture(actionID, record)
    }

    /// Revokes an export's disk access. A failure to revoke fails nothing: the access expires by itself.
    private func endExport(_ export: DiskExport) async {
        let backend = self.backend
        if let handle = try? await client.call({ try await backend.endDiskExport(export) }) {
            try? await client.wait(for: handle, timeout: timeoutSeconds)
        }
    }

    private func waitForCopy(_ blob: BlobID, what: String) async throws -> BlobProperties {
        let backend = self.backend
        let done = try await client.poll(timeout: timeoutSeconds, what: what, read: { try await backend.getBlobProperties(blob) },
                                         hint: { $0.retryAfter }, done: { $0.copyStatus != .pending })
        guard done.copyStatus == nil || done.copyStatus == .success else {
            try? await client.call { try await backend.deleteBlob(blob) }
            throw CloudError(status: 500, code: "CopyFailed", message: "\(what) ended \(done.copyStatus?.rawValue ?? "?"): \(done.copyStatusDescription ?? "no detail")")
        }
        return done
    }

    private func ensureContainer(_ container: ContainerID) async throws {
        let backend = self.backend
        do {
            try await client.call { try await backend.createContainer(container) }
        } catch let error as CloudError where error.code == "ContainerAlreadyExists" {}
    }

    private func distribute(_ spec: DistributionSpec, repair: Bool) async throws {
        let backend = self.backend
        let timeout = timeoutSeconds
        let name = spec.image.name
        let labName = spec.image.lab.name
        let expectedMD5: String?
        var expectedSize: Int64?
        if let capture = spec.capture {
            guard let record = await state.capture(capture) else {
                throw FactoryError(.workFailed, "No record for image \(name): its capture \(capture) did not run in this execution.")
            }
            expectedMD5 = record.md5
            expectedSize = record.sizeBytes
        } else {
            expectedMD5 = spec.expectedMD5
        }
        if repair {
            // Only the factory's own failed copy is deleted; the tag is checked again right before.
            let current = try await client.call { try await backend.getCustomImage(spec.image) }
            guard current.tags[FactoryTag.imagePath] != nil else {
                throw FactoryError(.workFailed, "Image \(name) in \(labName) is not the factory's (no ImagePath tag); it was left alone.")
            }
            let deletion = try await client.call { try await backend.deleteCustomImage(spec.image) }
            try await client.wait(for: deletion, timeout: timeout)
        }
        try await ensureContainer(spec.destination.container)
        let destination = spec.destination
        // A copy left pending by an interrupted run blocks a new one (409 PendingCopyOperation): abort it first.
        if let leftover = try? await client.call({ try await backend.getBlobProperties(destination) }), leftover.copyStatus == .pending {
            do {
                try await client.call { try await backend.abortBlobCopy(destination) }
            } catch let error as CloudError where error.code == "NoPendingCopyOperation" {}
        }
        // A copy that fails part-way (the service lost the source, a time-out) is started again, a few times,
        // before the distribution fails: the failed copy's blob is deleted by `waitForCopy` first.
        let source = try await treeSource(spec, expectedMD5: expectedMD5)
        var copied: BlobProperties
        var attempt = 0
        while true {
            attempt += 1
            _ = try await client.call { try await backend.startBlobCopy(from: source, to: destination) }
            do {
                copied = try await waitForCopy(destination, what: "Copy of \(name) to \(labName)")
                break
            } catch let error as CloudError where error.code == "CopyFailed" && attempt < Self.copyAttempts {
                events(.note("Copy of \(name) to \(labName) failed (\(error.message)); copying again (\(attempt + 1) of \(Self.copyAttempts))"))
            }
        }
        if let expectedMD5, copied.contentMD5 != expectedMD5 {
            try? await client.call { try await backend.deleteBlob(destination) }
            throw CloudError(status: 500, code: "Md5Mismatch", message: "The copy of \(name) in \(labName) has MD5 \(copied.contentMD5 ?? "none"), expected \(expectedMD5).")
        }
        if expectedMD5 == nil, let expectedSize, copied.contentLength != expectedSize {
            try? await client.call { try await backend.deleteBlob(destination) }
            throw CloudError(status: 500, code: "SizeMismatch", message: "The copy of \(name) in \(labName) has \(copied.contentLength) bytes, expected \(expectedSize).")
        }
        var tags = spec.tags
        tags[FactoryTag.runID] = runID
        let request = CustomImageRequest(id: spec.image, vhd: destination, osType: spec.osType, sysprep: spec.generalized,
                                         description: spec.description, author: "ImageFactory", tags: tags)
        let handle = try await client.call { try await backend.createCustomImage(request) }
        try await client.wait(for: handle, timeout: timeout)
        // A copy other labs read from stays; the lab's temporary container goes after them.
        if spec.keepCopy == true { return }
        do {
            try await client.call { try await backend.deleteBlob(destination) }
        } catch let error as CloudError where error.isNotFound {}
    }

    /// Where a distribution copies from: the first candidate of its tree that is a complete copy
    /// of the image (its parent's, an ancestor's), else the factory's VHD. A parent that failed
    /// or is gone re-parents this copy, and so its subtree, to the next one up.
    private func treeSource(_ spec: DistributionSpec, expectedMD5: String?) async throws -> BlobID {
        let backend = self.backend
        for candidate in spec.sourceCandidates ?? [] where candidate != spec.source {
            guard let properties = try? await client.call({ try await backend.getBlobProperties(candidate) }) else { continue }
            let complete = properties.copyStatus == nil || properties.copyStatus == .success
            if complete && (expectedMD5 == nil || properties.contentMD5 == expectedMD5) { return candidate }
            events(.note("\(spec.image.lab.name): the copy in \(candidate.container.account.name) is not usable (\(properties.copyStatus?.rawValue ?? "?")); reading the next source up"))
        }
        return spec.source
    }

    private func deleteVM(_ vm: VirtualMachineID) async throws {
        let backend = self.backend
        do {
            let handle = try await client.call { try await backend.deleteVirtualMachine(vm) }
            try await client.wait(for: handle, timeout: timeoutSeconds)
        } catch let error as CloudError where error.isNotFound {}
    }

    private func deleteTemporaryBlob(_ blob: BlobID) async throws {
        let backend = self.backend
        do {
            try await client.call { try await backend.deleteBlob(blob) }
        } catch let error as CloudError where error.isNotFound {}
    }

    private func deleteTemporaryContainer(_ container: ContainerID) async throws {
        let backend = self.backend
        do {
            try await client.call { try await backend.deleteContainer(container) }
        } catch let error as CloudError where error.code == "ContainerNotFound" {}
    }

    private func pruneDeployments(_ spec: DeploymentPruneSpec) async throws {
        let backend = self.backend
        let client = self.client
        _ = try await BoundedConcurrency.map(spec.names, limit: 8) { name in
            do {
                try await client.call { try await backend.deleteDeployment(subscriptionId: spec.subscriptionId, resourceGroup: spec.resourceGroup, name: name) }
            } catch let error as CloudError where error.isNotFound {}
        }
    }

    private func retireRecord(_ spec: RecordRetirementSpec) async throws {
        let backend = self.backend
        // The record first: a crash in between leaves a VHD without a record (temporary, cleaned up), never the reverse.
        for blob in [spec.record, spec.vhd] {
            do {
                try await client.call { try await backend.deleteBlob(blob) }
            } catch let error as CloudError where error.isNotFound {}
        }
    }

    private func retireImage(_ spec: ImageRetirementSpec) async throws {
        let backend = self.backend
        // Never delete an image the factory does not own: check the tag again right before deleting.
        let image: CustomImage
        do {
            image = try await client.call { try await backend.getCustomImage(spec.image) }
        } catch let error as CloudError where error.isNotFound { return }
        guard image.tags[FactoryTag.imagePath] != nil else {
            throw FactoryError(.workFailed, "Image \(spec.image.name) in \(spec.image.lab.name) has no ImagePath tag any more; it was left alone.")
        }
        let handle = try await client.call { try await backend.deleteCustomImage(spec.image) }
        try await client.wait(for: handle, timeout: timeoutSeconds)
    }
}

/// Secrets made for factory VMs. They are passed to the backend only, never logged or printed.
enum Secrets {
    static func password() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        let body = String((0..<20).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
        return body + "!9aA"
    }
}

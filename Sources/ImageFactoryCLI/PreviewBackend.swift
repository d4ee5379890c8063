import FactoryModel
import Foundation

/// The backend as commands that change nothing see it: every read goes to the real backend,
/// every write is refused, so `plan`, `validate`, `run --dry-run`, `images` and `report` cannot
/// write by construction. Labs that a run would create first (the local cloud's bootstrap) are
/// answered as existing and empty, so a plan on a fresh local cloud shows the whole run.
struct PreviewBackend: CloudBackend {
    let base: any CloudBackend
    /// Labs that do not exist yet and that a run creates before planning, by `LabID.key`.
    let assumedLabs: [String: Lab]

    init(base: any CloudBackend, assumedLabs: [Lab] = []) {
        self.base = base
        self.assumedLabs = Dictionary(assumedLabs.map { ($0.id.key, $0) }, uniquingKeysWith: { a, _ in a })
    }

    private func assumed(_ id: LabID) -> Lab? { assumedLabs[id.key] }
    private func assumedAccount(_ account: StorageAccountID) -> Bool {
        assumedLabs.values.contains { $0.storageAccount.name.lowercased() == account.name.lowercased() }
    }
    private func refused(_ what: String) -> CloudError {
        CloudError(status: 405, code: "ReadOnlyCommand", message: "\(what) was refused: this command changes nothing.")
    }

    // Labs and VMs
    func listLabs(subscriptionId: String) async throws -> [Lab] {
        let existing = try await base.listLabs(subscriptionId: subscriptionId)
        let keys = Set(existing.map(\.id.key))
        return existing + assumedLabs.values.filter { $0.id.subscriptionId.lowercased() == subscriptionId.lowercased() && !keys.contains($0.id.key) }
            .sorted { $0.id.key < $1.id.key }
    }
    func getLab(_ id: LabID) async throws -> Lab {
        if let lab = assumed(id) { return lab }
        return try await base.getLab(id)
    }
    func deployVirtualMachine(_ request: VMDeploymentRequest) async throws -> OperationHandle { throw refused("Deploying VM \(request.vm)") }
    func getVirtualMachine(_ id: VirtualMachineID) async throws -> LabVirtualMachine {
        if assumed(id.lab) != nil { throw CloudError.notFound("virtual machine", id.name) }
        return try await base.getVirtualMachine(id)
    }
    func listVirtualMachines(lab: LabID) async throws -> [LabVirtualMachine] {
        if assumed(lab) != nil { return [] }
        return try await base.listVirtualMachines(lab: lab)
    }
    func updateVirtualMachineTags(_ id: VirtualMachineID, tags: [String: String]) async throws { throw refused("Tagging VM \(id)") }
    func stopVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle { throw refused("Stopping VM \(id)") }
    func startVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle { throw refused("Starting VM \(id)") }
    func deleteVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle { throw refused("Deleting VM \(id)") }
    func beginDiskExport(_ id: VirtualMachineID, to destination: BlobID, accessSeconds: Double) async throws -> DiskExport {
        throw refused("Exporting the disk of \(id)")
    }
    func endDiskExport(_ export: DiskExport) async throws -> OperationHandle { throw refused("Revoking the disk access of \(export.vm)") }

    // Storage
    func createContainer(_ id: ContainerID) async throws { throw refused("Creating container \(id)") }
    func deleteContainer(_ id: ContainerID) async throws { throw refused("Deleting container \(id)") }
    func listContainers(account: StorageAccountID) async throws -> [String] {
        if assumedAccount(account) { return [] }
        return try await base.listContainers(account: account)
    }
    func putBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties { throw refused("Writing blob \(id)") }
    func putPageBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties { throw refused("Writing page blob \(id)") }
    func getBlob(_ id: BlobID) async throws -> Data { try await base.getBlob(id) }
    func getBlobProperties(_ id: BlobID) async throws -> BlobProperties { try await base.getBlobProperties(id) }
    func listBlobs(container: ContainerID, prefix: String?) async throws -> [BlobProperties] {
        if assumedAccount(container.account) {
            throw CloudError(status: 404, code: "ContainerNotFound", message: "The specified container does not exist.")
        }
        return try await base.listBlobs(container: container, prefix: prefix)
    }
    func deleteBlob(_ id: BlobID) async throws { throw refused("Deleting blob \(id)") }
    func startBlobCopy(from source: BlobID, to destination: BlobID) async throws -> BlobProperties { throw refused("Copying to \(destination)") }
    func abortBlobCopy(_ id: BlobID) async throws { throw refused("Aborting the copy to \(id)") }
    func acquireLease(_ id: BlobID, duration: Double, proposedLeaseID: String) async throws -> String { throw refused("Leasing \(id)") }
    func renewLease(_ id: BlobID, leaseID: String) async throws { throw refused("Renewing the lease on \(id)") }
    func releaseLease(_ id: BlobID, leaseID: String) async throws { throw refused("Releasing the lease on \(id)") }
    func breakLease(_ id: BlobID, period: Double?) async throws -> Int { throw refused("Breaking the lease on \(id)") }

    // Custom images
    func createCustomImage(_ request: CustomImageRequest) async throws -> OperationHandle { throw refused("Creating image \(request.id)") }
    func getCustomImage(_ id: CustomImageID) async throws -> CustomImage {
        if assumed(id.lab) != nil { throw CloudError.notFound("custom image", id.name) }
        return try await base.getCustomImage(id)
    }
    func listCustomImages(lab: LabID) async throws -> [CustomImage] {
        if assumed(lab) != nil { return [] }
        return try await base.listCustomImages(lab: lab)
    }
    func deleteCustomImage(_ id: CustomImageID) async throws -> OperationHandle { throw refused("Deleting image \(id)") }

    // Deployments
    func listDeployments(subscriptionId: String, resourceGroup: String) async throws -> [Deployment] {
        do {
            return try await base.listDeployments(subscriptionId: subscriptionId, resourceGroup: resourceGroup)
        } catch let error as CloudError where error.isNotFound
            && assumedLabs.values.contains(where: { $0.id.subscriptionId.lowercased() == subscriptionId.lowercased() && $0.id.resourceGroup.lowercased() == resourceGroup.lowercased() }) {
            return []
        }
    }
    func deleteDeployment(subscriptionId: String, resourceGroup: String, name: String) async throws { throw refused("Deleting deployment \(name)") }

    // Galleries
    func createGallery(_ id: GalleryID, location: String, description: String, tags: [String: String]) async throws -> OperationHandle { throw refused("Creating gallery \(id)") }
    func getGallery(_ id: GalleryID) async throws -> Gallery { try await base.getGallery(id) }
    func createImageDefinition(_ definition: GalleryImageDefinition) async throws -> OperationHandle { throw refused("Creating image definition \(definition.id.name)") }
    func getImageDefinition(_ id: GalleryImageDefinitionID) async throws -> GalleryImageDefinition { try await base.getImageDefinition(id) }
    func createImageVersion(_ request: GalleryImageVersionRequest) async throws -> OperationHandle { throw refused("Creating image version \(request.id.version)") }
    func getImageVersion(_ id: GalleryImageVersionID) async throws -> GalleryImageVersion { try await base.getImageVersion(id) }
    func listImageVersions(_ definition: GalleryImageDefinitionID) async throws -> [GalleryImageVersion] { try await base.listImageVersions(definition) }
    func deleteImageVersion(_ id: GalleryImageVersionID) async throws -> OperationHandle { throw refused("Deleting image version \(id.version)") }
    func listImageDefinitions(_ gallery: GalleryID) async throws -> [GalleryImageDefinition] { try await base.listImageDefinitions(gallery) }
    func deleteImageDefinition(_ id: GalleryImageDefinitionID) async throws -> OperationHandle { throw refused("Deleting image definition \(id.name)") }
    func updateImageVersion(_ id: GalleryImageVersionID, targetRegions: [TargetRegion]?, excludeFromLatest: Bool?) async throws -> OperationHandle {
        throw refused("Updating image version \(id.version)")
    }

    func pollOperation(_ handle: OperationHandle) async throws -> OperationStatus { try await base.pollOperation(handle) }
}

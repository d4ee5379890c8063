import FactoryModel
import Foundation

/// Holds one chosen Blob call of a backend until the test opens it, so a test picks a race's
/// interleaving instead of hoping for it (and never sleeps).
actor CallGate {
    private let operation: String
    private let name: String
    private var state: State = .armed
    private var arrivals: [CheckedContinuation<Void, Never>] = []
    private var holders: [CheckedContinuation<Void, Never>] = []

    private enum State { case armed, holding, open }

    /// Holds the first call of `operation` on the blob `name` (for a listing: with the prefix `name`).
    init(_ operation: String, _ name: String) {
        self.operation = operation
        self.name = name
    }

    /// Called by the backend before each call: the first matching one waits until `open()`.
    func pass(_ operation: String, _ name: String) async {
        guard state == .armed, operation == self.operation, name == self.name else { return }
        state = .holding
        for arrival in arrivals { arrival.resume() }
        arrivals = []
        await withCheckedContinuation { holders.append($0) }
    }

    /// Returns once a call is held at the gate.
    func reached() async {
        if state != .armed { return }
        await withCheckedContinuation { arrivals.append($0) }
    }

    func open() {
        state = .open
        for holder in holders { holder.resume() }
        holders = []
    }
}

/// A backend that forwards everything to another and passes its Blob writes and listings through a gate.
struct GatedBackend: CloudBackend {
    let base: any CloudBackend
    let gate: CallGate

    func listLabs(subscriptionId: String) async throws -> [Lab] { try await base.listLabs(subscriptionId: subscriptionId) }
    func getLab(_ id: LabID) async throws -> Lab { try await base.getLab(id) }
    func deployVirtualMachine(_ request: VMDeploymentRequest) async throws -> OperationHandle { try await base.deployVirtualMachine(request) }
    func getVirtualMachine(_ id: VirtualMachineID) async throws -> LabVirtualMachine { try await base.getVirtualMachine(id) }
    func listVirtualMachines(lab: LabID) async throws -> [LabVirtualMachine] { try await base.listVirtualMachines(lab: lab) }
    func updateVirtualMachineTags(_ id: VirtualMachineID, tags: [String: String]) async throws { try await base.updateVirtualMachineTags(id, tags: tags) }
    func stopVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle { try await base.stopVirtualMachine(id) }
    func startVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle { try await base.startVirtualMachine(id) }
    func deleteVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle { try await base.deleteVirtualMachine(id) }
    func beginDiskExport(_ id: VirtualMachineID, to destination: BlobID, accessSeconds: Double) async throws -> DiskExport {
        try await base.beginDiskExport(id, to: destination, accessSeconds: accessSeconds)
    }
    func endDiskExport(_ export: DiskExport) async throws -> OperationHandle { try await base.endDiskExport(export) }

    func createContainer(_ id: ContainerID) async throws { try await base.createContainer(id) }
    func deleteContainer(_ id: ContainerID) async throws { try await base.deleteContainer(id) }
    func listContainers(account: StorageAccountID) async throws -> [String] { try await base.listContainers(account: account) }
    func putBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        await gate.pass("putBlob", id.name)
        return try await base.putBlob(id, data: data, metadata: metadata)
    }
    func putPageBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        try await base.putPageBlob(id, data: data, metadata: metadata)
    }
    func getBlob(_ id: BlobID) async throws -> Data { try await base.getBlob(id) }
    func getBlobProperties(_ id: BlobID) async throws -> BlobProperties { try await base.getBlobProperties(id) }
    func listBlobs(container: ContainerID, prefix: String?) async throws -> [BlobProperties] {
        await gate.pass("listBlobs", prefix ?? "")
        return try await base.listBlobs(container: container, prefix: prefix)
    }
    func deleteBlob(_ id: BlobID) async throws { try await base.deleteBlob(id) }
    func startBlobCopy(from source: BlobID, to destination: BlobID) async throws -> BlobProperties { try await base.startBlobCopy(from: source, to: destination) }
    func abortBlobCopy(_ id: BlobID) async throws { try await base.abortBlobCopy(id) }
    func acquireLease(_ id: BlobID, duration: Double, proposedLeaseID: String) async throws -> String {
        try await base.acquireLease(id, duration: duration, proposedLeaseID: proposedLeaseID)
    }
    func renewLease(_ id: BlobID, leaseID: String) async throws { try await base.renewLease(id, leaseID: leaseID) }
    func releaseLease(_ id: BlobID, leaseID: String) async throws { try await base.releaseLease(id, leaseID: leaseID) }
    func breakLease(_ id: BlobID, period: Double?) async throws -> Int { try await base.breakLease(id, period: period) }

    func createCustomImage(_ request: CustomImageRequest) async throws -> OperationHandle { try await base.createCustomImage(request) }
    func getCustomImage(_ id: CustomImageID) async throws -> CustomImage { try await base.getCustomImage(id) }
    func listCustomImages(lab: LabID) async throws -> [CustomImage] { try await base.listCustomImages(lab: lab) }
    func deleteCustomImage(_ id: CustomImageID) async throws -> OperationHandle { try await base.deleteCustomImage(id) }

    func listDeployments(subscriptionId: String, resourceGroup: String) async throws -> [Deployment] {
        try await base.listDeployments(subscriptionId: subscriptionId, resourceGroup: resourceGroup)
    }
    func deleteDeployment(subscriptionId: String, resourceGroup: String, name: String) async throws {
        try await base.deleteDeployment(subscriptionId: subscriptionId, resourceGroup: resourceGroup, name: name)
    }

    func createGallery(_ id: GalleryID, location: String, description: String, tags: [String: String]) async throws -> OperationHandle {
        try await base.createGallery(id, location: location, description: description, tags: tags)
    }
    func getGallery(_ id: GalleryID) async throws -> Gallery { try await base.getGallery(id) }
    func createImageDefinition(_ definition: GalleryImageDefinition) async throws -> OperationHandle { try await base.createImageDefinition(definition) }
    func getImageDefinition(_ id: GalleryImageDefinitionID) async throws -> GalleryImageDefinition { try await base.getImageDefinition(id) }
    func listImageDefinitions(_ gallery: GalleryID) async throws -> [GalleryImageDefinition] { try await base.listImageDefinitions(gallery) }
    func deleteImageDefinition(_ id: GalleryImageDefinitionID) async throws -> OperationHandle { try await base.deleteImageDefinition(id) }
    func createImageVersion(_ request: GalleryImageVersionRequest) async throws -> OperationHandle { try await base.createImageVersion(request) }
    func getImageVersion(_ id: GalleryImageVersionID) async throws -> GalleryImageVersion { try await base.getImageVersion(id) }
    func listImageVersions(_ definition: GalleryImageDefinitionID) async throws -> [GalleryImageVersion] { try await base.listImageVersions(definition) }
    func deleteImageVersion(_ id: GalleryImageVersionID) async throws -> OperationHandle { try await base.deleteImageVersion(id) }
    func updateImageVersion(_ id: GalleryImageVersionID, targetRegions: [TargetRegion]?, excludeFromLatest: Bool?) async throws -> OperationHandle {
        try await base.updateImageVersion(id, targetRegions: targetRegions, excludeFromLatest: excludeFromLatest)
    }

    func pollOperation(_ handle: OperationHandle) async throws -> OperationStatus { try await base.pollOperation(handle) }
}

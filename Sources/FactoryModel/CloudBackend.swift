import Foundation

// The interface every cloud implements: the embedded local cloud, Azure (ARM REST) and test doubles.
// It is shaped after what the factory does in Azure: request values in, resource values out,
// long-running operations as handles the caller polls, errors with the service's code and message.

/// A DevTest Lab's identity.
public struct LabID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var subscriptionId: String
    public var resourceGroup: String
    public var name: String

    public init(subscriptionId: String, resourceGroup: String, name: String) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.name = name
    }

    /// The ARM resource id.
    public var resourceId: String {
        "/subscriptions/\(subscriptionId)/resourceGroups/\(resourceGroup)/providers/Microsoft.DevTestLab/labs/\(name)"
    }

    public var description: String { "\(name) (\(resourceGroup), \(subscriptionId))" }

    /// Identity ignoring case, as Azure compares names.
    public var key: String { "\(subscriptionId.lowercased())/\(resourceGroup.lowercased())/\(name.lowercased())" }
}

/// A lab as the backend reports it.
public struct Lab: Codable, Sendable, Equatable {
    public var id: LabID
    public var location: String
    /// The lab's default storage account, where VHDs for custom images must live.
    public var storageAccount: StorageAccountID
    public var provisioningState: ProvisioningState

    public init(id: LabID, location: String, storageAccount: StorageAccountID, provisioningState: ProvisioningState = .succeeded) {
        self.id = id
        self.location = location
        self.storageAccount = storageAccount
        self.provisioningState = provisioningState
    }
}

public struct StorageAccountID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var subscriptionId: String
    public var resourceGroup: String
    public var name: String

    public init(subscriptionId: String, resourceGroup: String, name: String) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.name = name
    }

    public var resourceId: String {
        "/subscriptions/\(subscriptionId)/resourceGroups/\(resourceGroup)/providers/Microsoft.Storage/storageAccounts/\(name)"
    }

    public var description: String { name }
}

public struct ContainerID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var account: StorageAccountID
    public var name: String

    public init(account: StorageAccountID, name: String) {
        self.account = account
        self.name = name
    }

    public var description: String { "\(account.name)/\(name)" }
}

public struct BlobID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var container: ContainerID
    public var name: String

    public init(container: ContainerID, name: String) {
        self.container = container
        self.name = name
    }

    /// The blob URL as Azure would give it (no SAS: secrets never go into ids or logs).
    public var url: String { "https://\(container.account.name).blob.core.windows.net/\(container.name)/\(name)" }
    public var description: String { "\(container.account.name)/\(container.name)/\(name)" }
}

/// The state of a server-side blob copy (`x-ms-copy-status`).
public enum CopyStatus: String, Codable, Sendable {
    case pending, success, aborted, failed
}

/// Blob storage's two kinds of blob the factory meets. Disks are page blobs: a VHD exported from a
/// disk is one, a copy keeps its source's kind, and Azure makes custom images and gallery versions
/// only from page blobs. Records, the lock and other small files are block blobs.
public enum BlobType: String, Codable, Sendable {
    case blockBlob = "BlockBlob"
    case pageBlob = "PageBlob"
}

/// Page blobs' layout: 512-byte pages, written at most 4 MiB per Put Page.
public enum PageBlobLayout {
    public static let pageSize = 512
    public static let maxPageWrite = 4 << 20

    /// The byte ranges of `data` holding a non-zero byte, in whole pages, each at most `maxRun`
    /// bytes: what Put Page writes of a disk. An all-zero page stays unwritten (a hole, read as zeros).
    public static func writtenRuns(_ data: Data, maxRun: Int = maxPageWrite) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + pageSize, bytes.count)
                if bytes[offset..<end].contains(where: { $0 != 0 }) {
                    if let last = runs.last, last.upperBound == offset, last.count < maxRun {
                        runs[runs.count - 1] = last.lowerBound..<end
                    } else {
                        runs.append(offset..<end)
                    }
                }
                offset = end
            }
        }
        return runs
    }
}

public struct BlobProperties: Codable, Sendable, Equatable {
    public var id: BlobID
    public var blobType: BlobType
    public var contentLength: Int64
    /// Base64 MD5 of the content, like Azure's Content-MD5.
    public var contentMD5: String?
    public var lastModified: Date
    public var metadata: [String: String]
    /// Set when the blob is or was the destination of a copy.
    public var copyStatus: CopyStatus?
    public var copyStatusDescription: String?
    /// Bytes copied so far / total, as `x-ms-copy-progress`.
    public var copyProgress: String?
    /// A hint for when to look again while a copy is pending.
    public var retryAfter: Double?

    public init(id: BlobID, blobType: BlobType = .blockBlob, contentLength: Int64, contentMD5: String?, lastModified: Date, metadata: [String: String] = [:],
                copyStatus: CopyStatus? = nil, copyStatusDescription: String? = nil, copyProgress: String? = nil, retryAfter: Double? = nil) {
        self.id = id
        self.blobType = blobType
        self.contentLength = contentLength
        self.contentMD5 = contentMD5
        self.lastModified = lastModified
        self.metadata = metadata
        self.copyStatus = copyStatus
        self.copyStatusDescription = copyStatusDescription
        self.copyProgress = copyProgress
        self.retryAfter = retryAfter
    }
}

public struct VirtualMachineID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var lab: LabID
    public var name: String

    public init(lab: LabID, name: String) {
        self.lab = lab
        self.name = name
    }

    public var resourceId: String { "\(lab.resourceId)/virtualmachines/\(name)" }
    public var description: String { "\(lab.name)/\(name)" }
}

/// Deploy a lab VM from a golden-image template (an ARM resource-group deployment).
public struct VMDeploymentRequest: Codable, Sendable, Equatable {
    public var vm: VirtualMachineID
    /// The ARM template text as in the repository.
    public var template: Data
    /// Template parameters (`newVMName`, `labName`, `size`, `userName`, `password`).
    public var parameters: [String: String]
    /// The artifacts to apply, in order (the template's plus the generalize artifact).
    public var artifacts: [ArtifactReference]
    public var tags: [String: String]
    /// Name of the resource-group deployment record.
    public var deploymentName: String

    public init(vm: VirtualMachineID, template: Data, parameters: [String: String], artifacts: [ArtifactReference],
                tags: [String: String], deploymentName: String) {
        self.vm = vm
        self.template = template
        self.parameters = parameters
        self.artifacts = artifacts
        self.tags = tags
        self.deploymentName = deploymentName
    }
}

/// The result of one artifact on a lab VM.
public struct ArtifactResult: Codable, Sendable, Equatable {
    public var name: String
    /// `Pending`, `Installing`, `Succeeded`, `Failed`, `Skipped`.
    public var status: String
    public var message: String?

    public init(name: String, status: String, message: String? = nil) {
        self.name = name
        self.status = status
        self.message = message
    }
}

public struct LabVirtualMachine: Codable, Sendable, Equatable {
    public var id: VirtualMachineID
    public var provisioningState: ProvisioningState
    public var powerState: PowerState
    public var osType: OSType?
    public var tags: [String: String]
    public var artifacts: [ArtifactResult]
    public var createdAt: Date
    /// Whether sysprep / deprovision ran: such a VM can be captured generalized but never started again.
    public var generalized: Bool
    /// Ready-made hint for the next poll while the VM is changing.
    public var retryAfter: Double?

    public init(id: VirtualMachineID, provisioningState: ProvisioningState, powerState: PowerState, osType: OSType?, tags: [String: String],
                artifacts: [ArtifactResult], createdAt: Date, generalized: Bool, retryAfter: Double? = nil) {
        self.id = id
        self.provisioningState = provisioningState
        self.powerState = powerState
        self.osType = osType
        self.tags = tags
        self.artifacts = artifacts
        self.createdAt = createdAt
        self.generalized = generalized
        self.retryAfter = retryAfter
    }

    public var isDeallocated: Bool { powerState == .deallocated }
    public var failedArtifacts: [ArtifactResult] { artifacts.filter { $0.status.lowercased() == "failed" } }
}

public struct CustomImageID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var lab: LabID
    public var name: String

    public init(lab: LabID, name: String) {
        self.lab = lab
        self.name = name
    }

    public var description: String { "\(lab.name)/\(name)" }
}

/// Create a lab custom image from a VHD blob in the lab's storage account.
public struct CustomImageRequest: Codable, Sendable, Equatable {
    public var id: CustomImageID
    public var vhd: BlobID
    public var osType: OSType
    /// True for a generalized (sysprepped / deprovisioned) VHD.
    public var sysprep: Bool
    public var description: String
    public var author: String
    public var tags: [String: String]

    public init(id: CustomImageID, vhd: BlobID, osType: OSType, sysprep: Bool, description: String, author: String, tags: [String: String]) {
        self.id = id
        self.vhd = vhd
        self.osType = osType
        self.sysprep = sysprep
        self.description = description
        self.author = author
        self.tags = tags
    }
}

public struct CustomImage: Codable, Sendable, Equatable {
    public var id: CustomImageID
    public var provisioningState: ProvisioningState
    public var osType: OSType
    public var sysprep: Bool
    public var description: String
    public var tags: [String: String]
    public var createdAt: Date
    /// The VHD it was made from.
    public var vhd: String?
    public var retryAfter: Double?

    public init(id: CustomImageID, provisioningState: ProvisioningState, osType: OSType, sysprep: Bool, description: String,
                tags: [String: String], createdAt: Date, vhd: String?, retryAfter: Double? = nil) {
        self.id = id
        self.provisioningState = provisioningState
        self.osType = osType
        self.sysprep = sysprep
        self.description = description
        self.tags = tags
        self.createdAt = createdAt
        self.vhd = vhd
        self.retryAfter = retryAfter
    }
}

/// A resource-group deployment record (Azure keeps at most 800 per resource group).
public struct Deployment: Codable, Sendable, Equatable {
    public var subscriptionId: String
    public var resourceGroup: String
    public var name: String
    public var provisioningState: ProvisioningState
    public var timestamp: Date

    public init(subscriptionId: String, resourceGroup: String, name: String, provisioningState: ProvisioningState, timestamp: Date) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.name = name
        self.provisioningState = provisioningState
        self.timestamp = timestamp
    }
}

// MARK: Galleries (Azure Compute Gallery)

public struct GalleryID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var subscriptionId: String
    public var resourceGroup: String
    public var name: String

    public init(subscriptionId: String, resourceGroup: String, name: String) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.name = name
    }

    public var description: String { name }
}

public struct GalleryImageDefinitionID: Codable, Sendable, Hashable {
    public var gallery: GalleryID
    public var name: String
    public init(gallery: GalleryID, name: String) {
        self.gallery = gallery
        self.name = name
    }
}

public struct GalleryImageVersionID: Codable, Sendable, Hashable {
    public var definition: GalleryImageDefinitionID
    /// `major.minor.patch`.
    public var version: String
    public init(definition: GalleryImageDefinitionID, version: String) {
        self.definition = definition
        self.version = version
    }
}

public struct Gallery: Codable, Sendable, Equatable {
    public var id: GalleryID
    public var location: String
    public var description: String
    public var provisioningState: String
    public var tags: [String: String]
    public init(id: GalleryID, location: String, description: String, provisioningState: String, tags: [String: String] = [:]) {
        self.id = id
        self.location = location
        self.description = description
        self.provisioningState = provisioningState
        self.tags = tags
    }

    private enum CodingKeys: String, CodingKey { case id, location, description, provisioningState, tags }
    /// Older records have no tags.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(GalleryID.self, forKey: .id)
        location = try c.decode(String.self, forKey: .location)
        description = try c.decode(String.self, forKey: .description)
        provisioningState = try c.decode(String.self, forKey: .provisioningState)
        tags = try c.decodeIfPresent([String: String].self, forKey: .tags) ?? [:]
    }
}

public struct GalleryImageDefinition: Codable, Sendable, Equatable {
    public var id: GalleryImageDefinitionID
    public var location: String
    public var osType: OSType
    public var osState: OSState
    public var publisher: String
    public var offer: String
    public var sku: String
    public var provisioningState: String
    public var tags: [String: String]
    /// `V1` or `V2` (nil: Azure's default, V1).
    public var hyperVGeneration: String?
    public var recommendedVCPUs: Int?
    public var recommendedMemoryGB: Int?
    public var endOfLife: Date?
    public var description: String?
    public init(id: GalleryImageDefinitionID, location: String, osType: OSType, osState: OSState, publisher: String, offer: String,
                sku: String, provisioningState: String, tags: [String: String] = [:], hyperVGeneration: String? = nil,
                recommendedVCPUs: Int? = nil, recommendedMemoryGB: Int? = nil, endOfLife: Date? = nil, description: String? = nil) {
        self.id = id
        self.location = location
        self.osType = osType
        self.osState = osState
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.provisioningState = provisioningState
        self.tags = tags
        self.hyperVGeneration = hyperVGeneration
        self.recommendedVCPUs = recommendedVCPUs
        self.recommendedMemoryGB = recommendedMemoryGB
        self.endOfLife = endOfLife
        self.description = description
    }

    private enum CodingKeys: String, CodingKey {
        case id, location, osType, osState, publisher, offer, sku, provisioningState, tags, hyperVGeneration, recommendedVCPUs, recommendedMemoryGB, endOfLife, description
    }
    /// Older records have none of the optional fields, nor tags.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(GalleryImageDefinitionID.self, forKey: .id)
        location = try c.decode(String.self, forKey: .location)
        osType = try c.decode(OSType.self, forKey: .osType)
        osState = try c.decode(OSState.self, forKey: .osState)
        publisher = try c.decode(String.self, forKey: .publisher)
        offer = try c.decode(String.self, forKey: .offer)
        sku = try c.decode(String.self, forKey: .sku)
        provisioningState = try c.decode(String.self, forKey: .provisioningState)
        tags = try c.decodeIfPresent([String: String].self, forKey: .tags) ?? [:]
        hyperVGeneration = try c.decodeIfPresent(String.self, forKey: .hyperVGeneration)
        recommendedVCPUs = try c.decodeIfPresent(Int.self, forKey: .recommendedVCPUs)
        recommendedMemoryGB = try c.decodeIfPresent(Int.self, forKey: .recommendedMemoryGB)
        endOfLife = try c.decodeIfPresent(Date.self, forKey: .endOfLife)
        description = try c.decodeIfPresent(String.self, forKey: .description)
    }
}

public struct TargetRegion: Codable, Sendable, Equatable, Hashable {
    public var name: String
    public var regionalReplicaCount: Int
    /// `Standard_LRS`, `Standard_ZRS` or `Premium_LRS` (nil: Azure's default).
    public var storageAccountType: String?
    public init(name: String, regionalReplicaCount: Int = 1, storageAccountType: String? = nil) {
        self.name = name
        self.regionalReplicaCount = regionalReplicaCount
        self.storageAccountType = storageAccountType
    }
}

public struct RegionReplication: Codable, Sendable, Equatable {
    public var region: String
    /// `Replicating`, `Completed`, `Failed`.
    public var state: String
    public var progress: Int
    public init(region: String, state: String, progress: Int) {
        self.region = region
        self.state = state
        self.progress = progress
    }
}

public struct GalleryImageVersionRequest: Codable, Sendable, Equatable {
    public var id: GalleryImageVersionID
    public var location: String
    public var sourceVHD: BlobID
    public var targetRegions: [TargetRegion]
    public var tags: [String: String]
    /// Kept out of "latest": a VM asking for the definition's latest version does not get it.
    public var excludeFromLatest: Bool
    public var endOfLife: Date?
    public init(id: GalleryImageVersionID, location: String, sourceVHD: BlobID, targetRegions: [TargetRegion], tags: [String: String],
                excludeFromLatest: Bool = false, endOfLife: Date? = nil) {
        self.id = id
        self.location = location
        self.sourceVHD = sourceVHD
        self.targetRegions = targetRegions
        self.tags = tags
        self.excludeFromLatest = excludeFromLatest
        self.endOfLife = endOfLife
    }
}

public struct GalleryImageVersion: Codable, Sendable, Equatable {
    public var id: GalleryImageVersionID
    public var location: String
    public var provisioningState: String
    public var tags: [String: String]
    public var targetRegions: [TargetRegion]
    /// `InProgress`, `Completed`, `Failed`.
    public var aggregatedReplicationState: String
    public var replication: [RegionReplication]
    public var createdAt: Date
    public var retryAfter: Double?
    public var excludeFromLatest: Bool
    public var endOfLife: Date?
    public init(id: GalleryImageVersionID, location: String, provisioningState: String, tags: [String: String], targetRegions: [TargetRegion],
                aggregatedReplicationState: String, replication: [RegionReplication], createdAt: Date, retryAfter: Double? = nil,
                excludeFromLatest: Bool = false, endOfLife: Date? = nil) {
        self.id = id
        self.location = location
        self.provisioningState = provisioningState
        self.tags = tags
        self.targetRegions = targetRegions
        self.aggregatedReplicationState = aggregatedReplicationState
        self.replication = replication
        self.createdAt = createdAt
        self.retryAfter = retryAfter
        self.excludeFromLatest = excludeFromLatest
        self.endOfLife = endOfLife
    }

    /// Every target region's replica is complete: only then is a version published.
    public var isFullyReplicated: Bool {
        aggregatedReplicationState.lowercased() == "completed"
            && targetRegions.allSatisfy { region in replication.contains { Location.normalize($0.region) == Location.normalize(region.name) && $0.state.lowercased() == "completed" } }
    }

    /// Regions whose replication failed (each retried alone by updating the version's target regions).
    public var failedRegions: [String] { replication.filter { $0.state.lowercased() == "failed" }.map(\.region) }
}

// MARK: Long-running operations and errors

/// The answer to a request that may run long: either it completed at once (ARM's synchronous
/// 200/201, an idempotent repeat of a PUT), or the service accepted it and it is polled by its
/// operation reference (the local cloud's operation id; in Azure the `Azure-AsyncOperation` or
/// `Location` URL) until it ends. One model for every backend.
public struct OperationHandle: Codable, Sendable, Equatable {
    public enum State: Codable, Sendable, Equatable {
        /// Nothing to wait for.
        case completed
        /// Accepted: poll the operation `id`.
        case accepted(id: String)
    }

    public var state: State
    /// Seconds to wait before the first poll.
    public var retryAfter: Double

    /// An accepted operation to poll.
    public init(id: String, retryAfter: Double) {
        state = .accepted(id: id)
        self.retryAfter = retryAfter
    }

    /// A request that completed synchronously.
    public static let completed = OperationHandle(state: .completed)

    private init(state: State) {
        self.state = state
        retryAfter = 0
    }

    /// The operation to poll, or nil when there is nothing to wait for.
    public var id: String? {
        if case .accepted(let id) = state { return id }
        return nil
    }
}

public enum OperationStatus: Sendable, Equatable {
    case inProgress(retryAfter: Double)
    case succeeded
    case failed(CloudError)
}

/// An error as the service gives it: HTTP status, ARM error code and message.
public struct CloudError: Error, Sendable, Equatable, Codable, CustomStringConvertible, LocalizedError {
    public var status: Int
    public var code: String
    public var message: String
    /// Seconds the service asked to wait (429 and some 503s).
    public var retryAfter: Double?

    public init(status: Int, code: String, message: String, retryAfter: Double? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// Whether a retry may succeed: throttling, server errors, time-outs.
    public var isTransient: Bool { status == 429 || status == 408 || status >= 500 }
    public var isNotFound: Bool { status == 404 }
    /// The backend could not be reached or would not let us in (exit code 3).
    public var isUnavailable: Bool { status == 401 || status == 403 || code == "BackendUnreachable" }

    public var description: String { "\(code): \(message)" }
    public var errorDescription: String? { description }

    public static func notFound(_ kind: String, _ name: String) -> CloudError {
        CloudError(status: 404, code: "ResourceNotFound", message: "The \(kind) '\(name)' was not found.")
    }
}

/// An OS disk export in progress: the disk's read access is granted and a copy reads from it.
/// The access must stay granted until the copy has ended (Azure fails a pending copy whose
/// source access was revoked), so `endDiskExport` comes after the destination's copy status
/// left `pending`, whatever it ended as.
public struct DiskExport: Codable, Sendable, Equatable {
    public var vm: VirtualMachineID
    public var destination: BlobID
    /// The destination as the copy started.
    public var started: BlobProperties

    public init(vm: VirtualMachineID, destination: BlobID, started: BlobProperties) {
        self.vm = vm
        self.destination = destination
        self.started = started
    }
}

// The interface every cloud implements, in small capabilities. All methods are safe to call concurrently.

/// DevTest Labs: labs, their VMs, and exporting a VM's OS disk.
public protocol LabsAndVirtualMachines: Sendable {
    func listLabs(subscriptionId: String) async throws -> [Lab]
    func getLab(_ id: LabID) async throws -> Lab
    /// Starts a resource-group deployment of a golden-image template; poll `getVirtualMachine`.
    func deployVirtualMachine(_ request: VMDeploymentRequest) async throws -> OperationHandle
    func getVirtualMachine(_ id: VirtualMachineID) async throws -> LabVirtualMachine
    func listVirtualMachines(lab: LabID) async throws -> [LabVirtualMachine]
    func updateVirtualMachineTags(_ id: VirtualMachineID, tags: [String: String]) async throws
    func stopVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle
    func startVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle
    func deleteVirtualMachine(_ id: VirtualMachineID) async throws -> OperationHandle
    /// Grants read access to a deallocated VM's OS disk (`beginGetAccess`) for `accessSeconds`
    /// and starts copying it into `destination`; poll `getBlobProperties` on the destination.
    func beginDiskExport(_ id: VirtualMachineID, to destination: BlobID, accessSeconds: Double) async throws -> DiskExport
    /// Revokes the disk's read access (`endGetAccess`) once the export's copy has ended.
    func endDiskExport(_ export: DiskExport) async throws -> OperationHandle
}

/// Blob storage: containers, blobs, server-side copies, and leases (the factory's lock).
public protocol BlobStorage: Sendable {
    func createContainer(_ id: ContainerID) async throws
    func deleteContainer(_ id: ContainerID) async throws
    func listContainers(account: StorageAccountID) async throws -> [String]
    /// Writes a block blob in one request (records, the lock, small files).
    func putBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties
    /// Writes a page blob, as a disk's VHD is: created at `data.count` bytes (a multiple of 512, as
    /// Azure requires, else 400 `InvalidHeaderValue`), then only the pages holding data are written
    /// (Put Page), so a sparse disk costs its data, not its size. Tests and `local add-image` place
    /// VHDs with it; the factory's own VHDs come from disk exports and copies.
    func putPageBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties
    func getBlob(_ id: BlobID) async throws -> Data
    func getBlobProperties(_ id: BlobID) async throws -> BlobProperties
    func listBlobs(container: ContainerID, prefix: String?) async throws -> [BlobProperties]
    func deleteBlob(_ id: BlobID) async throws
    /// Server-side asynchronous copy; poll the destination's properties.
    func startBlobCopy(from source: BlobID, to destination: BlobID) async throws -> BlobProperties
    func abortBlobCopy(_ id: BlobID) async throws
    /// Acquires a lease on a blob (a distributed lock): 409 `LeaseAlreadyPresent` when another holder has it.
    /// Lease ids are GUIDs, as Blob storage requires.
    func acquireLease(_ id: BlobID, duration: Double, proposedLeaseID: String) async throws -> String
    func renewLease(_ id: BlobID, leaseID: String) async throws
    func releaseLease(_ id: BlobID, leaseID: String) async throws
    /// Breaks a lease without its id (`x-ms-lease-action: break`); returns the seconds until it is broken (0 for at once).
    func breakLease(_ id: BlobID, period: Double?) async throws -> Int
}

/// DevTest Labs custom images.
public protocol CustomImages: Sendable {
    func createCustomImage(_ request: CustomImageRequest) async throws -> OperationHandle
    func getCustomImage(_ id: CustomImageID) async throws -> CustomImage
    func listCustomImages(lab: LabID) async throws -> [CustomImage]
    func deleteCustomImage(_ id: CustomImageID) async throws -> OperationHandle
}

/// A resource group's deployment history (Azure keeps at most 800).
public protocol DeploymentHistory: Sendable {
    func listDeployments(subscriptionId: String, resourceGroup: String) async throws -> [Deployment]
    func deleteDeployment(subscriptionId: String, resourceGroup: String, name: String) async throws
}

/// Azure Compute Gallery: galleries, image definitions and versions.
public protocol ComputeGalleries: Sendable {
    func createGallery(_ id: GalleryID, location: String, description: String, tags: [String: String]) async throws -> OperationHandle
    func getGallery(_ id: GalleryID) async throws -> Gallery
    func createImageDefinition(_ definition: GalleryImageDefinition) async throws -> OperationHandle
    func getImageDefinition(_ id: GalleryImageDefinitionID) async throws -> GalleryImageDefinition
    func listImageDefinitions(_ gallery: GalleryID) async throws -> [GalleryImageDefinition]
    /// Deletes an empty definition (409 while it holds versions).
    func deleteImageDefinition(_ id: GalleryImageDefinitionID) async throws -> OperationHandle
    func createImageVersion(_ request: GalleryImageVersionRequest) async throws -> OperationHandle
    func getImageVersion(_ id: GalleryImageVersionID) async throws -> GalleryImageVersion
    func listImageVersions(_ definition: GalleryImageDefinitionID) async throws -> [GalleryImageVersion]
    func deleteImageVersion(_ id: GalleryImageVersionID) async throws -> OperationHandle
    /// Changes a version's target regions (a failed region is replicated again; a removed one is
    /// dropped) and/or its exclude-from-latest flag (PATCH); nil leaves a property as it is.
    func updateImageVersion(_ id: GalleryImageVersionID, targetRegions: [TargetRegion]?, excludeFromLatest: Bool?) async throws -> OperationHandle
}

extension ComputeGalleries {
    public func createGallery(_ id: GalleryID, location: String, description: String) async throws -> OperationHandle {
        try await createGallery(id, location: location, description: description, tags: [:])
    }
}

/// Polling of accepted long-running operations.
public protocol LongRunningOperations: Sendable {
    /// Polls an accepted operation (the ARM Location / Azure-AsyncOperation URL); a completed handle is `succeeded`.
    func pollOperation(_ handle: OperationHandle) async throws -> OperationStatus
}

/// Everything the factory asks of a cloud: the embedded local cloud, Azure (ARM and Blob REST)
/// and test doubles implement it, and one conformance suite checks each.
public protocol CloudBackend: LabsAndVirtualMachines, BlobStorage, CustomImages, DeploymentHistory, ComputeGalleries, LongRunningOperations {}

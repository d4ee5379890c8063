import FactoryModel
import Foundation

/// What one target lab holds, as observed.
public struct LabInventory: Codable, Sendable, Equatable {
    /// The Labs.json entry's key (subscription/lab name, lowercased).
    public var key: String
    public var lab: Lab?
    /// Why the lab could not be read (not found, no access).
    public var problem: String?
    public var images: [CustomImage]
    /// Blobs in the lab's `imagefactoryvhds` container: temporary copies.
    public var blobs: [BlobProperties]
    /// Whether the lab's temporary container exists (distribution makes it; cleanup removes it).
    public var hasTemporaryContainer: Bool

    public init(key: String, lab: Lab?, problem: String?, images: [CustomImage], blobs: [BlobProperties], hasTemporaryContainer: Bool? = nil) {
        self.key = key
        self.lab = lab
        self.problem = problem
        self.images = images
        self.blobs = blobs
        self.hasTemporaryContainer = hasTemporaryContainer ?? !blobs.isEmpty
    }
}

/// The observed state of the factory and every target lab: the planner's second input.
public struct Inventory: Codable, Sendable, Equatable {
    public var factory: Lab
    public var factoryVMs: [LabVirtualMachine]
    public var factoryImages: [CustomImage]
    /// Records in the factory storage (`<name>.json`), decoded.
    public var records: [VhdRecord]
    /// Every blob in the factory container, by name.
    public var factoryBlobs: [BlobProperties]
    public var labs: [LabInventory]
    public var deployments: [Deployment]
    /// Records that could not be read.
    public var problems: [Diagnostic]
    /// Labs an earlier run delivered to (the factory's targets record) that Labs.json no longer
    /// lists, with their images: the factory's images there are reported, or retired on request.
    public var removedLabs: [LabInventory] = []
    /// The labs of the last run's targets record (empty before the first run that wrote one).
    public var previousTargets: [LabID] = []
    /// Keys of previous targets that no longer exist (404): nothing left to remember.
    public var goneTargets: Set<String> = []

    public init(factory: Lab, factoryVMs: [LabVirtualMachine], factoryImages: [CustomImage], records: [VhdRecord], factoryBlobs: [BlobProperties],
                labs: [LabInventory], deployments: [Deployment], problems: [Diagnostic]) {
        self.factory = factory
        self.factoryVMs = factoryVMs
        self.factoryImages = factoryImages
        self.records = records
        self.factoryBlobs = factoryBlobs
        self.labs = labs
        self.deployments = deployments
        self.problems = problems
    }

    public func lab(_ key: String) -> LabInventory? { labs.first { $0.key == key } }

    /// A digest of everything planning depends on. Volatile hints (retry-after) are left out, so
    /// the same cloud gives the same fingerprint; any change a plan would act on changes it.
    public var fingerprint: String {
        var lines: [String] = ["factory \(factory.id.key) \(factory.location)"]
        for vm in factoryVMs.sorted(by: { $0.id.name < $1.id.name }) {
            lines.append("vm \(vm.id.name.lowercased()) \(vm.provisioningState) \(vm.powerState) \(canonical(vm.tags)) \(vm.failedArtifacts.map(\.name).joined(separator: ","))")
        }
        for image in factoryImages.sorted(by: { $0.id.name < $1.id.name }) {
            lines.append("fimage \(image.id.name.lowercased()) \(image.provisioningState) \(canonical(image.tags))")
        }
        for blob in factoryBlobs.sorted(by: { $0.id.name < $1.id.name }) {
            lines.append("fblob \(blob.id.name) \(blob.contentLength) \(blob.copyStatus?.rawValue ?? "-") \(blob.contentMD5 ?? "-")")
        }
        for lab in labs.sorted(by: { $0.key < $1.key }) {
            lines.append("lab \(lab.key) \(lab.lab?.id.key ?? "-") \(lab.problem ?? "") \(lab.hasTemporaryContainer ? "container" : "-")")
            for image in lab.images.sorted(by: { $0.id.name < $1.id.name }) {
                lines.append("  image \(image.id.name.lowercased()) \(image.provisioningState) \(canonical(image.tags))")
            }
            for blob in lab.blobs.sorted(by: { $0.id.name < $1.id.name }) {
                lines.append("  blob \(blob.id.name) \(blob.copyStatus?.rawValue ?? "-")")
            }
        }
        for lab in removedLabs.sorted(by: { $0.key < $1.key }) {
            lines.append("removed \(lab.key)")
            for image in lab.images.sorted(by: { $0.id.name < $1.id.name }) {
                lines.append("  image \(image.id.name.lowercased()) \(image.provisioningState) \(canonical(image.tags))")
            }
        }
        lines.append("deployments \(deployments.count)")
        return StableHash.sha256(lines.joined(separator: "\n"))
    }

    private func canonical(_ tags: [String: String]) -> String {
        tags.keys.sorted().map { "\($0)=\(tags[$0]!)" }.joined(separator: ";")
    }
}

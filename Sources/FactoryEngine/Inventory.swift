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

/// What one configured gallery holds, as observed: its definitions and their versions (each
/// version of the factory's with its per-region replication).
public struct GalleryInventory: Codable, Sendable, Equatable {
    /// The Galleries entry's key (`GalleryTarget.key`).
    public var key: String
    /// Nil when the gallery does not exist yet.
    public var gallery: Gallery?
    /// Why the gallery could not be read (no access).
    public var problem: String?
    public var definitions: [Definition]

    public struct Definition: Codable, Sendable, Equatable {
        public var definition: GalleryImageDefinition
        public var versions: [GalleryImageVersion]
        public init(definition: GalleryImageDefinition, versions: [GalleryImageVersion]) {
            self.definition = definition
            self.versions = versions
        }
    }

    public init(key: String, gallery: Gallery?, problem: String? = nil, definitions: [Definition] = []) {
        self.key = key
        self.gallery = gallery
        self.problem = problem
        self.definitions = definitions
    }

    public func definition(named name: String) -> Definition? {
        definitions.first { $0.definition.id.name.lowercased() == name.lowercased() }
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
    /// Every gallery of the configuration.
    public var galleries: [GalleryInventory] = []

    public func gallery(_ key: String) -> GalleryInventory? { galleries.first { $0.key == key } }

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
        for gallery in galleries.sorted(by: { $0.key < $1.key }) {
            lines.append("gallery \(gallery.key) \(gallery.gallery?.provisioningState ?? "-") \(gallery.problem ?? "")")
            for d in gallery.definitions.sorted(by: { $0.definition.id.name < $1.definition.id.name }) {
                lines.append("  definition \(d.definition.id.name.lowercased()) \(d.definition.osType) \(d.definition.osState) \(canonical(d.definition.tags))")
                for v in d.versions.sorted(by: { $0.id.version < $1.id.version }) {
                    let regions = v.replication.map { "\($0.region):\($0.state)" }.sorted().joined(separator: ",")
                    lines.append("    version \(v.id.version) \(v.provisioningState) \(v.excludeFromLatest) \(regions) \(v.targetRegions.map(\.name).sorted()) \(canonical(v.tags))")
                }
            }
        }
        lines.append("deployments \(deployments.count)")
        return StableHash.sha256(lines.joined(separator: "\n"))
    }

    private func canonical(_ tags: [String: String]) -> String {
        tags.keys.sorted().map { "\($0)=\(tags[$0]!)" }.joined(separator: ";")
    }
}

import Foundation

/// How a gallery retires versions it no longer keeps (`RetireMode` in Labs.json).
public enum GalleryRetireMode: String, Codable, Sendable, CaseIterable {
    /// Delete at once.
    case delete = "Delete"
    /// First mark exclude-from-latest (VMs that ask for "latest" stop getting it), delete a run later.
    case excludeFromLatest = "ExcludeFromLatest"
}

/// One region of a gallery's publishing profile, as written in Labs.json.
public struct GalleryRegion: Codable, Sendable, Equatable, Hashable {
    /// Normalized: lower case, no spaces (`westeurope`).
    public var name: String
    /// Replicas in this region; nil takes the gallery's `ReplicaCount`.
    public var replicaCount: Int?
    /// `Standard_LRS`, `Standard_ZRS` or `Premium_LRS`; nil takes Azure's default.
    public var storageAccountType: String?

    public init(name: String, replicaCount: Int? = nil, storageAccountType: String? = nil) {
        self.name = name
        self.replicaCount = replicaCount
        self.storageAccountType = storageAccountType
    }
}

/// A `Galleries` entry of Labs.json: an Azure Compute Gallery the factory publishes to.
public struct GalleryTarget: Codable, Sendable, Equatable {
    public var subscriptionId: String
    public var resourceGroup: String
    public var galleryName: String
    /// Normalized region of the gallery resource (and of the source of every version).
    public var location: String
    /// The ImagePaths as written, normalized to `/`.
    public var imagePaths: [String]
    /// The template paths those ImagePaths resolve to (whole segments, as for labs), sorted.
    public var images: [String]
    /// As written; the source region is added when missing (Azure requires it), see `publishingRegions`.
    public var targetRegions: [GalleryRegion]
    /// Replicas per region unless the region says otherwise (default 1).
    public var replicaCount: Int
    /// Versions kept per definition (default: the factory's `imagesToSave`).
    public var imagesToSave: Int
    /// New versions are published excluded from "latest".
    public var excludeFromLatest: Bool
    /// Days after publishing when a version reaches end of life (nil: none), unless the template says.
    public var endOfLifeDays: Int?
    /// The definitions' publisher unless the template says (default "ImageFactory").
    public var publisher: String?
    /// Images must meet Azure Lab Services' rules (OS disk at most 128 GB, one disk).
    public var labServices: Bool
    public var retireMode: GalleryRetireMode
    /// 1-based line of the entry in Labs.json, for diagnostics.
    public var line: Int?

    public init(subscriptionId: String, resourceGroup: String, galleryName: String, location: String, imagePaths: [String], images: [String] = [],
                targetRegions: [GalleryRegion] = [], replicaCount: Int = 1, imagesToSave: Int = 2, excludeFromLatest: Bool = false,
                endOfLifeDays: Int? = nil, publisher: String? = nil, labServices: Bool = false, retireMode: GalleryRetireMode = .delete, line: Int? = nil) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.galleryName = galleryName
        self.location = location
        self.imagePaths = imagePaths
        self.images = images
        self.targetRegions = targetRegions
        self.replicaCount = replicaCount
        self.imagesToSave = imagesToSave
        self.excludeFromLatest = excludeFromLatest
        self.endOfLifeDays = endOfLifeDays
        self.publisher = publisher
        self.labServices = labServices
        self.retireMode = retireMode
        self.line = line
    }

    public var id: GalleryID { GalleryID(subscriptionId: subscriptionId, resourceGroup: resourceGroup, name: galleryName) }

    /// Identity ignoring case, as Azure compares names.
    public var key: String { "\(subscriptionId.lowercased())/\(resourceGroup.lowercased())/\(galleryName.lowercased())" }

    /// Whether the gallery takes this template.
    public func subscribes(to templatePath: String) -> Bool { images.contains(templatePath) }

    /// The regions a version is published to: the written ones, each with its replica count, and the
    /// gallery's own region first when it is missing (Azure requires the source region). The flag
    /// says whether it was added, for a note in the plan.
    public var publishingRegions: (regions: [TargetRegion], addedSource: Bool) {
        var regions = targetRegions.map {
            TargetRegion(name: $0.name, regionalReplicaCount: $0.replicaCount ?? replicaCount, storageAccountType: $0.storageAccountType)
        }
        let added = !regions.contains { $0.name == location }
        if added { regions.insert(TargetRegion(name: location, regionalReplicaCount: replicaCount), at: 0) }
        return (regions, added)
    }
}

/// What a template's `metadata.imageFactory` may say about its gallery image definition.
public struct GalleryImageMetadata: Codable, Sendable, Equatable, Hashable {
    public var definitionName: String?
    public var publisher: String?
    public var offer: String?
    public var sku: String?
    /// `V1` or `V2`.
    public var hyperVGeneration: String?
    public var recommendedVCPUs: Int?
    public var recommendedMemoryGB: Int?
    /// An end-of-life date for every version (ISO 8601), instead of the gallery's `EndOfLifeDays`.
    public var endOfLife: Date?

    public init(definitionName: String? = nil, publisher: String? = nil, offer: String? = nil, sku: String? = nil, hyperVGeneration: String? = nil,
                recommendedVCPUs: Int? = nil, recommendedMemoryGB: Int? = nil, endOfLife: Date? = nil) {
        self.definitionName = definitionName
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.hyperVGeneration = hyperVGeneration
        self.recommendedVCPUs = recommendedVCPUs
        self.recommendedMemoryGB = recommendedMemoryGB
        self.endOfLife = endOfLife
    }
}

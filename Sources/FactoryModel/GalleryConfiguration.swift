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

// MARK: Image definitions

/// The image definition a gallery holds for one template: what the planner creates (or finds) before
/// publishing that template's versions. Made by `GalleryTarget.definition(for:)`, a pure function of
/// the template and the gallery, so `validate`, `plan` and `run` agree on every name.
public struct GalleryImageDefinitionPlan: Codable, Sendable, Equatable, Hashable {
    /// The definition's resource name in the gallery.
    public var name: String
    /// Publisher, offer and SKU: the definition's identifier, which Azure requires unique per gallery.
    public var publisher: String
    public var offer: String
    public var sku: String
    public var osType: OSType
    /// From the template's capture mode: generalized (sysprep / deprovision) or specialized.
    public var osState: OSState
    /// `V1` or `V2`; nil leaves Azure's default (V1).
    public var hyperVGeneration: String?
    public var recommendedVCPUs: Int?
    public var recommendedMemoryGB: Int?
    public var endOfLife: Date?

    public init(name: String, publisher: String, offer: String, sku: String, osType: OSType, osState: OSState,
                hyperVGeneration: String? = nil, recommendedVCPUs: Int? = nil, recommendedMemoryGB: Int? = nil, endOfLife: Date? = nil) {
        self.name = name
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.osType = osType
        self.osState = osState
        self.hyperVGeneration = hyperVGeneration
        self.recommendedVCPUs = recommendedVCPUs
        self.recommendedMemoryGB = recommendedMemoryGB
        self.endOfLife = endOfLife
    }

    /// The identifier as Azure compares it (ignoring case), to find two definitions Azure would refuse.
    public var identifierKey: String { "\(publisher.lowercased())/\(offer.lowercased())/\(sku.lowercased())" }
}

extension GalleryTarget {
    /// The publisher used when neither the template nor the gallery names one.
    public static let defaultPublisher = "ImageFactory"

    /// The definition this gallery uses for `template`. Each value is the template's
    /// `metadata.imageFactory` setting when it has one, else derived from the template path so a
    /// factory needs no per-image configuration (`Windows/Server 2022/Datacenter.json`):
    /// - name: the path without `.json`, segments joined with `-` (`Windows-Server-2022-Datacenter`);
    /// - publisher: the gallery's `Publisher`, else `ImageFactory`;
    /// - offer: the folders joined with `-` (`Windows-Server-2022`), or the file name for a file at the top;
    /// - sku: the file name without `.json` (`Datacenter`);
    /// - osType and osState: the template's (its capture mode);
    /// - hyperVGeneration: `V2` when the marketplace SKU the template starts from is a generation 2
    ///   one (its name ends in `-g2` or contains `gen2`: a Gen2 disk published as V1 does not boot),
    ///   else nil (Azure's default, V1).
    /// Derived values keep letters, digits, `.`, `-` and `_`, turn anything else into `-`, collapse
    /// repeated `-`, start and end with a letter or digit, and are cut to Azure's lengths
    /// (80 for the name, 128 for publisher, offer and SKU).
    public func definition(for template: GoldenImageTemplate) -> GalleryImageDefinitionPlan {
        let metadata = template.galleryImage ?? GalleryImageMetadata()
        var stem = template.path
        if stem.lowercased().hasSuffix(".json") { stem = String(stem.dropLast(5)) }
        let segments = stem.split(separator: "/").map(String.init)
        let folders = segments.dropLast()
        let derivedName = Naming.sanitizedGalleryName(segments.joined(separator: "-"), maxLength: Naming.maxGalleryImageNameLength)
        let derivedOffer = Naming.sanitizedGalleryName(folders.isEmpty ? (segments.first ?? "") : folders.joined(separator: "-"),
                                                       maxLength: Naming.maxGalleryIdentifierLength)
        let derivedSku = Naming.sanitizedGalleryName(segments.last ?? "", maxLength: Naming.maxGalleryIdentifierLength)
        return GalleryImageDefinitionPlan(
            name: metadata.definitionName ?? (derivedName.isEmpty ? "Image" : derivedName),
            publisher: metadata.publisher ?? publisher ?? Self.defaultPublisher,
            offer: metadata.offer ?? (derivedOffer.isEmpty ? "Images" : derivedOffer),
            sku: metadata.sku ?? (derivedSku.isEmpty ? "Image" : derivedSku),
            osType: template.osType, osState: template.osState,
            hyperVGeneration: metadata.hyperVGeneration ?? Self.impliedHyperVGeneration(template.galleryImageReference),
            recommendedVCPUs: metadata.recommendedVCPUs, recommendedMemoryGB: metadata.recommendedMemoryGB,
            endOfLife: metadata.endOfLife)
    }

    /// `V2` for a generation 2 marketplace SKU (`2022-datacenter-g2`, `22_04-lts-gen2`), else nil.
    static func impliedHyperVGeneration(_ reference: GalleryImageReference?) -> String? {
        guard let sku = reference?.sku.lowercased() else { return nil }
        return sku.hasSuffix("-g2") || sku.contains("gen2") ? "V2" : nil
    }

    /// The end of life of a version published at `publishedAt`: the template's `endOfLife` when it
    /// sets one, else `EndOfLifeDays` after publishing, else none.
    public func versionEndOfLife(for template: GoldenImageTemplate, publishedAt: Date) -> Date? {
        if let date = template.galleryImage?.endOfLife { return date }
        return endOfLifeDays.map { publishedAt.addingTimeInterval(Double($0) * 86_400) }
    }

    /// What Azure would refuse in this entry's subscription id, resource group or gallery name.
    public var azureNameProblems: [String] {
        var problems: [String] = []
        if let p = Naming.subscriptionIdProblem(subscriptionId) { problems.append("SubscriptionId \"\(Naming.printable(subscriptionId))\" \(p)") }
        if let p = Naming.resourceGroupProblem(resourceGroup) { problems.append("ResourceGroup \"\(Naming.printable(resourceGroup))\" \(p)") }
        if let p = Naming.galleryNameProblem(galleryName) { problems.append("GalleryName \"\(Naming.printable(galleryName))\" \(p)") }
        return problems
    }
}

// MARK: Azure Lab Services

extension GalleryTarget {
    /// The largest OS disk Azure Lab Services shows from a gallery: 128 GiB.
    public static let labServicesMaxOSDiskBytes: Int64 = 128 * 1_073_741_824

    /// Why Azure Lab Services would not offer the image of `record`, for a gallery marked
    /// `LabServices` (empty otherwise). Lab Services lists only gallery images whose OS disk is at
    /// most 128 GB and that have a single disk; an image that breaks this publishes fine and then
    /// silently never appears in the lab creation list, so the planner asks before publishing.
    ///
    /// The size is the record's `sizeBytes` (records of the original factory have none: pass the
    /// VHD blob's length as `vhdBytes`). A fixed VHD file is the disk plus a 512-byte footer, which
    /// is allowed for. A record describes one captured OS disk VHD and the factory captures no data
    /// disks, so "one disk" cannot fail here; templates asking for data disks are reported by
    /// `validate` instead (`GoldenImageTemplate.requestedDataDisks`).
    public func labServicesProblems(record: VhdRecord, vhdBytes: Int64? = nil) -> [String] {
        guard labServices else { return [] }
        return Self.labServicesProblems(record: record, vhdBytes: vhdBytes)
    }

    /// Lab Services' rules for one image, whatever gallery asks.
    public static func labServicesProblems(record: VhdRecord, vhdBytes: Int64? = nil) -> [String] {
        var problems: [String] = []
        if let bytes = record.sizeBytes ?? vhdBytes, bytes > Self.labServicesMaxOSDiskBytes + 512 {
            let gib = Double(bytes - 512) / 1_073_741_824
            problems.append(String(format: "its OS disk is %.0f GB; Azure Lab Services offers only images with an OS disk of at most 128 GB", gib))
        }
        return problems
    }
}

// MARK: Naming rules

extension Naming {
    /// Azure's longest gallery and image definition name.
    public static let maxGalleryNameLength = 80
    public static let maxGalleryImageNameLength = 80
    /// The longest publisher, offer or SKU of a definition's identifier the factory writes.
    public static let maxGalleryIdentifierLength = 128

    /// Azure's rule for a gallery name: 1 to 80 letters, digits, periods and underscores (no hyphens,
    /// unlike most Azure names), starting with a letter or digit and not ending with a period (the
    /// Compute API's pattern `^[^_\W][\w-._]{0,79}(?<![-.])$`; the service refuses hyphens although
    /// that pattern would allow them).
    public static func galleryNameProblem(_ name: String) -> String? {
        if name.isEmpty || name.count > maxGalleryNameLength { return "must be 1 to 80 characters long (it has \(name.count))" }
        if name.contains("-") { return "cannot contain hyphens; gallery names allow only letters, digits, periods and underscores" }
        if !name.unicodeScalars.allSatisfy({ isASCIIAlphanumeric($0) || $0 == "." || $0 == "_" }) {
            return "may contain only letters, digits, periods and underscores"
        }
        if !isASCIIAlphanumeric(name.unicodeScalars.first!) { return "must start with a letter or digit" }
        if name.hasSuffix(".") { return "cannot end with a period" }
        return nil
    }

    /// Azure's rule for an image definition name: 1 to 80 letters, digits, periods, hyphens and
    /// underscores, starting and ending with a letter or digit.
    public static func galleryImageNameProblem(_ name: String) -> String? {
        if name.isEmpty || name.count > maxGalleryImageNameLength { return "must be 1 to 80 characters long (it has \(name.count))" }
        if !name.unicodeScalars.allSatisfy(isGalleryNameCharacter) { return "may contain only letters, digits, periods, hyphens and underscores" }
        if !isASCIIAlphanumeric(name.unicodeScalars.first!) || !isASCIIAlphanumeric(name.unicodeScalars.last!) {
            return "must start and end with a letter or digit"
        }
        return nil
    }

    /// The factory's rule for a definition's publisher, offer and SKU: 1 to 128 letters, digits,
    /// periods, hyphens and underscores (the characters definition names allow), so a value Azure
    /// might refuse or show oddly is caught by `validate`.
    public static func galleryIdentifierProblem(_ value: String) -> String? {
        if value.isEmpty || value.count > maxGalleryIdentifierLength { return "must be 1 to 128 characters long (it has \(value.count))" }
        if !value.unicodeScalars.allSatisfy(isGalleryNameCharacter) { return "may contain only letters, digits, periods, hyphens and underscores" }
        return nil
    }

    /// `text` made into a definition name part: letters, digits, `.`, `-` and `_` kept, anything
    /// else turned into `-`, repeated `-` collapsed, leading and trailing characters other than
    /// letters and digits dropped, cut to `maxLength`. Empty when nothing usable is left.
    public static func sanitizedGalleryName(_ text: String, maxLength: Int) -> String {
        var scalars: [Unicode.Scalar] = []
        for scalar in text.unicodeScalars {
            let mapped: Unicode.Scalar = isGalleryNameCharacter(scalar) ? scalar : "-"
            if mapped == "-" && scalars.last == "-" { continue }
            scalars.append(mapped)
        }
        func trim(_ s: inout [Unicode.Scalar]) {
            while let first = s.first, !isASCIIAlphanumeric(first) { s.removeFirst() }
            while let last = s.last, !isASCIIAlphanumeric(last) { s.removeLast() }
        }
        trim(&scalars)
        if scalars.count > maxLength {
            scalars = Array(scalars.prefix(maxLength))
            trim(&scalars)
        }
        var result = ""
        result.unicodeScalars.append(contentsOf: scalars)
        return result
    }

    static func isASCIIAlphanumeric(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }

    static func isGalleryNameCharacter(_ s: Unicode.Scalar) -> Bool {
        isASCIIAlphanumeric(s) || s == "." || s == "-" || s == "_"
    }
}

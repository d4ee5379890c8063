import Foundation

/// The factory's stages, in the order a run executes them.
public enum Stage: String, Codable, Sendable, CaseIterable, Comparable {
    case build, snap, distribute, cleanup, retire

    public static func < (a: Stage, b: Stage) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The closed set of things a run can do: the names of `PlanOperation`'s cases, for
/// reports, renderers and filters.
public enum ActionKind: String, Codable, Sendable, CaseIterable {
    /// Deploy a factory VM from a template and wait until it is deallocated.
    case buildVM
    /// Delete a factory VM left from an earlier run with an older template, before rebuilding.
    case replaceStaleVM
    /// Export a deallocated factory VM's disk to a VHD and write its record.
    case captureImage
    /// Copy a VHD to a lab's storage and create the custom image.
    case distributeImage
    /// Delete a half-made copy (failed image) in a lab and make it again.
    case repairImage
    case deleteFactoryVM
    case deleteTemporaryBlob
    /// Delete a target lab's temporary container once distribution is done (the original did too).
    case deleteTemporaryContainer
    case pruneDeployments
    /// Delete a VHD and its record from the factory storage.
    case retireRecord
    /// Delete a custom image from a lab.
    case retireImage
    /// Create a gallery the configuration names (stage distribute).
    case ensureGallery
    /// Create an image definition a gallery lacks for a template (stage distribute).
    case ensureImageDefinition
    /// Publish an image version to a gallery and wait for every region's replica (stage distribute).
    case publishVersion
    /// Delete a gallery version the gallery no longer keeps, or mark it exclude-from-latest first (stage retire).
    case retireVersion
    /// Delete an empty image definition the factory made (stage retire).
    case deleteImageDefinition
}

/// Deploy a factory VM: the template as the commit holds it and every parameter but the VM's
/// password, which is made at execution and never written into a plan.
public struct BuildVMSpec: Codable, Sendable, Equatable {
    public var vm: VirtualMachineID
    public var imagePath: String
    public var templateSha: String
    public var osState: OSState
    /// The ARM template's text, exactly as in the repository.
    public var template: String
    public var parameters: [String: String]
    /// The artifacts to apply, in order (the template's plus the generalize artifact).
    public var artifacts: [ArtifactReference]
    /// The VM's tags; the executing run adds its run id.
    public var tags: [String: String]
    public var deploymentName: String

    public init(vm: VirtualMachineID, imagePath: String, templateSha: String, osState: OSState, template: String, parameters: [String: String],
                artifacts: [ArtifactReference], tags: [String: String], deploymentName: String) {
        self.vm = vm
        self.imagePath = imagePath
        self.templateSha = templateSha
        self.osState = osState
        self.template = template
        self.parameters = parameters
        self.artifacts = artifacts
        self.tags = tags
        self.deploymentName = deploymentName
    }
}

/// A factory VM an action deletes.
public struct FactoryVMSpec: Codable, Sendable, Equatable {
    public var vm: VirtualMachineID
    /// The template path the VM was built from (its ImagePath tag), when it has one.
    public var imagePath: String?

    public init(vm: VirtualMachineID, imagePath: String?) {
        self.vm = vm
        self.imagePath = imagePath
    }
}

/// Capture a deallocated factory VM as a VHD and write its record after it.
public struct CaptureSpec: Codable, Sendable, Equatable {
    public var vm: VirtualMachineID
    public var imageName: String
    public var imagePath: String
    public var description: String
    public var osType: OSType
    public var osState: OSState
    public var commit: String?
    public var templateSha: String
    /// Where the VHD goes, and its JSON record beside it (written last: its presence means the image is complete).
    public var vhd: BlobID
    public var record: BlobID
    /// The VM was left by an earlier run: wait for its build to finish as a build would.
    public var adopted: Bool

    public init(vm: VirtualMachineID, imageName: String, imagePath: String, description: String, osType: OSType, osState: OSState,
                commit: String?, templateSha: String, vhd: BlobID, record: BlobID, adopted: Bool) {
        self.vm = vm
        self.imageName = imageName
        self.imagePath = imagePath
        self.description = description
        self.osType = osType
        self.osState = osState
        self.commit = commit
        self.templateSha = templateSha
        self.vhd = vhd
        self.record = record
        self.adopted = adopted
    }
}

/// Copy a VHD into a lab's storage, check it, and make the lab's custom image from it.
public struct DistributionSpec: Codable, Sendable, Equatable {
    public var image: CustomImageID
    public var imagePath: String
    /// The VHD in the factory's storage.
    public var source: BlobID
    /// The temporary copy in the lab's storage; deleted once the image exists.
    public var destination: BlobID
    public var osType: OSType
    public var generalized: Bool
    public var description: String
    /// The image's tags; the executing run adds its run id.
    public var tags: [String: String]
    /// The source's MD5 from its record, when the record exists at planning.
    public var expectedMD5: String?
    /// The capture in this plan whose record gives the MD5, when the image is made in this run.
    public var capture: String?
    public var crossRegion: Bool
    /// Tree-shaped fan-out: where to copy from, in order. A finished copy in another lab of the same
    /// region (the parent), then its parent, …, and last the factory's VHD (`source`): the first one
    /// that is complete is read, so a failed parent re-parents its subtree. Nil: `source` only.
    public var sourceCandidates: [BlobID]?
    /// Other labs' copies read this lab's copy: it stays (the lab's temporary container goes after them).
    public var keepCopy: Bool?

    public init(image: CustomImageID, imagePath: String, source: BlobID, destination: BlobID, osType: OSType, generalized: Bool,
                description: String, tags: [String: String], expectedMD5: String?, capture: String?, crossRegion: Bool) {
        self.image = image
        self.imagePath = imagePath
        self.source = source
        self.destination = destination
        self.osType = osType
        self.generalized = generalized
        self.description = description
        self.tags = tags
        self.expectedMD5 = expectedMD5
        self.capture = capture
        self.crossRegion = crossRegion
    }
}

/// Delete completed factory deployments from a resource group's history (Azure keeps 800).
public struct DeploymentPruneSpec: Codable, Sendable, Equatable {
    public var subscriptionId: String
    public var resourceGroup: String
    public var names: [String]

    public init(subscriptionId: String, resourceGroup: String, names: [String]) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.names = names
    }
}

/// Delete a VHD record: its JSON first, so a crash in between leaves a VHD without a record
/// (cleaned up as temporary), never a record without its VHD.
public struct RecordRetirementSpec: Codable, Sendable, Equatable {
    public var imageName: String
    public var imagePath: String
    public var record: BlobID
    public var vhd: BlobID

    public init(imageName: String, imagePath: String, record: BlobID, vhd: BlobID) {
        self.imageName = imageName
        self.imagePath = imagePath
        self.record = record
        self.vhd = vhd
    }
}

/// Delete a lab's custom image, if it still carries the factory's ImagePath tag.
public struct ImageRetirementSpec: Codable, Sendable, Equatable {
    public var image: CustomImageID
    public var imagePath: String

    public init(image: CustomImageID, imagePath: String) {
        self.image = image
        self.imagePath = imagePath
    }
}

/// What an action does, fully resolved: the executor needs nothing but this, a backend and a clock.
/// Create a gallery (tagged as the factory's).
public struct GallerySpec: Codable, Sendable, Equatable {
    public var gallery: GalleryID
    public var location: String
    public var description: String
    public var tags: [String: String]
    public init(gallery: GalleryID, location: String, description: String, tags: [String: String]) {
        self.gallery = gallery
        self.location = location
        self.description = description
        self.tags = tags
    }
}

/// Create an image definition, resolved in full from the gallery's settings and the template.
public struct GalleryDefinitionSpec: Codable, Sendable, Equatable {
    public var definition: GalleryImageDefinition
    public var imagePath: String
    public init(definition: GalleryImageDefinition, imagePath: String) {
        self.definition = definition
        self.imagePath = imagePath
    }
}

/// Publish one VHD record as one gallery version and see every region's replica complete.
public struct GalleryPublishSpec: Codable, Sendable, Equatable {
    public var definition: GalleryImageDefinitionID
    public var imagePath: String
    /// `Major.Minor.Patch` from the record's capture time; nil when the record is made in this run
    /// (the executor reads it from `record`).
    public var version: String?
    /// The VHD record: the version number comes from it.
    public var record: BlobID
    /// The VHD in the factory's storage.
    public var source: BlobID
    /// The gallery's region: the version's location and its source region.
    public var location: String
    /// Every region to replicate to, the source region first when it had to be added.
    public var targetRegions: [TargetRegion]
    public var tags: [String: String]
    public var excludeFromLatest: Bool
    /// A fixed end of life (the template's), else `endOfLifeDays` after publishing.
    public var endOfLife: Date?
    public var endOfLifeDays: Int?
    /// The capture in this plan that makes the record, when it is made in this run.
    public var capture: String?
    /// The gallery is for Azure Lab Services: the record is checked against its rules before publishing.
    public var labServices: Bool = false

    public init(definition: GalleryImageDefinitionID, imagePath: String, version: String?, record: BlobID, source: BlobID, location: String,
                targetRegions: [TargetRegion], tags: [String: String], excludeFromLatest: Bool, endOfLife: Date?, endOfLifeDays: Int?, capture: String?) {
        self.definition = definition
        self.imagePath = imagePath
        self.version = version
        self.record = record
        self.source = source
        self.location = location
        self.targetRegions = targetRegions
        self.tags = tags
        self.excludeFromLatest = excludeFromLatest
        self.endOfLife = endOfLife
        self.endOfLifeDays = endOfLifeDays
        self.capture = capture
    }
}

/// Retire a gallery version: delete it, or first only mark it exclude-from-latest.
public struct GalleryVersionRetirementSpec: Codable, Sendable, Equatable {
    public var version: GalleryImageVersionID
    public var imagePath: String?
    /// Mark exclude-from-latest now, delete a run later (`RetireMode: ExcludeFromLatest`).
    public var markOnly: Bool
    /// The factory tag the version must still carry (`FactoryTag.factory`).
    public var factory: String
    public init(version: GalleryImageVersionID, imagePath: String?, markOnly: Bool, factory: String) {
        self.version = version
        self.imagePath = imagePath
        self.markOnly = markOnly
        self.factory = factory
    }
}

/// Delete an empty image definition this factory made.
public struct GalleryDefinitionDeletionSpec: Codable, Sendable, Equatable {
    public var definition: GalleryImageDefinitionID
    /// The factory tag the definition must still carry (`FactoryTag.factory`).
    public var factory: String
    public init(definition: GalleryImageDefinitionID, factory: String) {
        self.definition = definition
        self.factory = factory
    }
}

public enum PlanOperation: Sendable, Equatable {
    case buildVM(BuildVMSpec)
    case replaceStaleVM(FactoryVMSpec)
    case captureImage(CaptureSpec)
    case distributeImage(DistributionSpec)
    case repairImage(DistributionSpec)
    case deleteFactoryVM(FactoryVMSpec)
    case deleteTemporaryBlob(BlobID)
    case deleteTemporaryContainer(ContainerID)
    case pruneDeployments(DeploymentPruneSpec)
    case retireRecord(RecordRetirementSpec)
    case retireImage(ImageRetirementSpec)
    case ensureGallery(GallerySpec)
    case ensureImageDefinition(GalleryDefinitionSpec)
    case publishVersion(GalleryPublishSpec)
    case retireVersion(GalleryVersionRetirementSpec)
    case deleteImageDefinition(GalleryDefinitionDeletionSpec)

    public var kind: ActionKind {
        switch self {
        case .buildVM: .buildVM
        case .replaceStaleVM: .replaceStaleVM
        case .captureImage: .captureImage
        case .distributeImage: .distributeImage
        case .repairImage: .repairImage
        case .deleteFactoryVM: .deleteFactoryVM
        case .deleteTemporaryBlob: .deleteTemporaryBlob
        case .deleteTemporaryContainer: .deleteTemporaryContainer
        case .pruneDeployments: .pruneDeployments
        case .retireRecord: .retireRecord
        case .retireImage: .retireImage
        case .ensureGallery: .ensureGallery
        case .ensureImageDefinition: .ensureImageDefinition
        case .publishVersion: .publishVersion
        case .retireVersion: .retireVersion
        case .deleteImageDefinition: .deleteImageDefinition
        }
    }
}

/// One step of a plan: what it does, why, and what must succeed first.
public struct PlanAction: Sendable, Equatable, Identifiable {
    public var id: String
    public var stage: Stage
    public var operation: PlanOperation
    public var reason: String
    /// Actions of this plan that must have succeeded in the same execution before this one starts.
    public var dependsOn: [String]
    /// The lab a storage-only action is about (its storage account belongs to it), for reports.
    public var labHint: LabID?
    /// Actions this one must wait for, whatever their outcome (a lab's temporary container goes
    /// after every copy into it has ended): ordering only, never a reason to skip.
    public var after: [String]

    public init(id: String, stage: Stage, operation: PlanOperation, reason: String, dependsOn: [String] = [], labHint: LabID? = nil,
                after: [String] = []) {
        self.id = id
        self.stage = stage
        self.operation = operation
        self.reason = reason
        self.dependsOn = dependsOn
        self.labHint = labHint
        self.after = after
    }

    public var kind: ActionKind { operation.kind }

    /// The lab the action works in (a target lab, or the factory lab).
    public var labID: LabID? {
        switch operation {
        case .buildVM(let s): s.vm.lab
        case .replaceStaleVM(let s), .deleteFactoryVM(let s): s.vm.lab
        case .captureImage(let s): s.vm.lab
        case .distributeImage(let s), .repairImage(let s): s.image.lab
        case .retireImage(let s): s.image.lab
        case .deleteTemporaryBlob, .deleteTemporaryContainer, .pruneDeployments, .retireRecord: labHint
        case .ensureGallery, .ensureImageDefinition, .publishVersion, .retireVersion, .deleteImageDefinition: nil
        }
    }

    /// The gallery a gallery action works in.
    public var galleryID: GalleryID? {
        switch operation {
        case .ensureGallery(let s): s.gallery
        case .ensureImageDefinition(let s): s.definition.id.gallery
        case .publishVersion(let s): s.definition.gallery
        case .retireVersion(let s): s.version.definition.gallery
        case .deleteImageDefinition(let s): s.definition.gallery
        default: nil
        }
    }

    /// Where the action works, for grouping and reports: a lab's name, or `gallery NAME`.
    public var lab: String? { labID?.name ?? galleryID.map { "gallery \($0.name)" } }

    public var imagePath: String? {
        switch operation {
        case .buildVM(let s): s.imagePath
        case .replaceStaleVM(let s), .deleteFactoryVM(let s): s.imagePath
        case .captureImage(let s): s.imagePath
        case .distributeImage(let s), .repairImage(let s): s.imagePath
        case .retireRecord(let s): s.imagePath
        case .retireImage(let s): s.imagePath
        case .ensureImageDefinition(let s): s.imagePath
        case .publishVersion(let s): s.imagePath
        case .retireVersion(let s): s.imagePath
        case .deleteTemporaryBlob, .deleteTemporaryContainer, .pruneDeployments, .ensureGallery, .deleteImageDefinition: nil
        }
    }

    public var imageName: String? {
        switch operation {
        case .captureImage(let s): s.imageName
        case .distributeImage(let s), .repairImage(let s): s.image.name
        case .retireRecord(let s): s.imageName
        case .retireImage(let s): s.image.name
        default: nil
        }
    }

    public var vmName: String? {
        switch operation {
        case .buildVM(let s): s.vm.name
        case .replaceStaleVM(let s), .deleteFactoryVM(let s): s.vm.name
        case .captureImage(let s): s.vm.name
        default: nil
        }
    }

    /// The blob or container the action touches, as `account/container/name`, for people.
    public var resource: String? {
        switch operation {
        case .distributeImage(let s), .repairImage(let s): s.destination.description
        case .deleteTemporaryBlob(let blob): blob.description
        case .deleteTemporaryContainer(let container): container.description + "/"
        case .retireRecord(let s): s.vhd.description
        case .captureImage(let s): s.vhd.description
        case .pruneDeployments(let s): s.names.joined(separator: ", ")
        case .ensureGallery(let s): s.gallery.name
        case .ensureImageDefinition(let s): "\(s.definition.id.gallery.name)/\(s.definition.id.name)"
        case .publishVersion(let s): "\(s.definition.gallery.name)/\(s.definition.name)/\(s.version ?? "(version from the capture)")"
        case .retireVersion(let s): "\(s.version.definition.gallery.name)/\(s.version.definition.name)/\(s.version.version)"
        case .deleteImageDefinition(let s): "\(s.definition.gallery.name)/\(s.definition.name)"
        default: nil
        }
    }

    /// A distribution to a lab in another region than the factory.
    public var crossRegion: Bool? {
        switch operation {
        case .distributeImage(let s), .repairImage(let s): s.crossRegion
        default: nil
        }
    }

    /// Whether the action deletes an image (counted against --max-deletions).
    public var deletesImage: Bool {
        if case .retireVersion(let s) = operation { return !s.markOnly }
        return kind == .retireRecord || kind == .retireImage
    }
}

extension PlanAction: Codable {
    private enum CodingKeys: String, CodingKey { case id, stage, kind, reason, dependsOn, after, lab, spec }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        stage = try c.decode(Stage.self, forKey: .stage)
        reason = try c.decode(String.self, forKey: .reason)
        dependsOn = try c.decodeIfPresent([String].self, forKey: .dependsOn) ?? []
        after = try c.decodeIfPresent([String].self, forKey: .after) ?? []
        labHint = try c.decodeIfPresent(LabID.self, forKey: .lab)
        switch try c.decode(ActionKind.self, forKey: .kind) {
        case .buildVM: operation = .buildVM(try c.decode(BuildVMSpec.self, forKey: .spec))
        case .replaceStaleVM: operation = .replaceStaleVM(try c.decode(FactoryVMSpec.self, forKey: .spec))
        case .captureImage: operation = .captureImage(try c.decode(CaptureSpec.self, forKey: .spec))
        case .distributeImage: operation = .distributeImage(try c.decode(DistributionSpec.self, forKey: .spec))
        case .repairImage: operation = .repairImage(try c.decode(DistributionSpec.self, forKey: .spec))
        case .deleteFactoryVM: operation = .deleteFactoryVM(try c.decode(FactoryVMSpec.self, forKey: .spec))
        case .deleteTemporaryBlob: operation = .deleteTemporaryBlob(try c.decode(BlobID.self, forKey: .spec))
        case .deleteTemporaryContainer: operation = .deleteTemporaryContainer(try c.decode(ContainerID.self, forKey: .spec))
        case .pruneDeployments: operation = .pruneDeployments(try c.decode(DeploymentPruneSpec.self, forKey: .spec))
        case .retireRecord: operation = .retireRecord(try c.decode(RecordRetirementSpec.self, forKey: .spec))
        case .retireImage: operation = .retireImage(try c.decode(ImageRetirementSpec.self, forKey: .spec))
        case .ensureGallery: operation = .ensureGallery(try c.decode(GallerySpec.self, forKey: .spec))
        case .ensureImageDefinition: operation = .ensureImageDefinition(try c.decode(GalleryDefinitionSpec.self, forKey: .spec))
        case .publishVersion: operation = .publishVersion(try c.decode(GalleryPublishSpec.self, forKey: .spec))
        case .retireVersion: operation = .retireVersion(try c.decode(GalleryVersionRetirementSpec.self, forKey: .spec))
        case .deleteImageDefinition: operation = .deleteImageDefinition(try c.decode(GalleryDefinitionDeletionSpec.self, forKey: .spec))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(stage, forKey: .stage)
        try c.encode(kind, forKey: .kind)
        try c.encode(reason, forKey: .reason)
        try c.encode(dependsOn, forKey: .dependsOn)
        if !after.isEmpty { try c.encode(after, forKey: .after) }
        try c.encodeIfPresent(labHint, forKey: .lab)
        switch operation {
        case .buildVM(let s): try c.encode(s, forKey: .spec)
        case .replaceStaleVM(let s), .deleteFactoryVM(let s): try c.encode(s, forKey: .spec)
        case .captureImage(let s): try c.encode(s, forKey: .spec)
        case .distributeImage(let s), .repairImage(let s): try c.encode(s, forKey: .spec)
        case .deleteTemporaryBlob(let s): try c.encode(s, forKey: .spec)
        case .deleteTemporaryContainer(let s): try c.encode(s, forKey: .spec)
        case .pruneDeployments(let s): try c.encode(s, forKey: .spec)
        case .retireRecord(let s): try c.encode(s, forKey: .spec)
        case .retireImage(let s): try c.encode(s, forKey: .spec)
        case .ensureGallery(let s): try c.encode(s, forKey: .spec)
        case .ensureImageDefinition(let s): try c.encode(s, forKey: .spec)
        case .publishVersion(let s): try c.encode(s, forKey: .spec)
        case .retireVersion(let s): try c.encode(s, forKey: .spec)
        case .deleteImageDefinition(let s): try c.encode(s, forKey: .spec)
        }
    }
}

/// The factory lab and where its VHDs, records and lock live, as planning found them.
public struct FactoryTarget: Codable, Sendable, Equatable {
    public var lab: LabID
    public var location: String
    /// The factory's container: VHDs, their records, and the lock blob.
    public var container: ContainerID

    public init(lab: LabID, location: String, container: ContainerID) {
        self.lab = lab
        self.location = location
        self.container = container
    }
}

/// What a run would do: plain, versioned data computed from the configuration at a commit and
/// the inventory observed in the cloud. Printing, saving and diffing a plan need no backend.
public struct Plan: Codable, Sendable, Equatable {
    /// 2: actions carry fully resolved operations, the factory target is in the plan.
    public static let currentFormatVersion = 2

    public var formatVersion: Int
    public var commit: String?
    /// Fingerprint of the inventory the plan was computed from; `apply` refuses a plan whose inventory changed.
    public var inventoryFingerprint: String
    public var createdAt: Date
    public var factoryLab: String
    /// The factory lab and its container (where the lock is taken).
    public var factory: FactoryTarget
    public var settings: PlanSettings
    public var actions: [PlanAction]
    /// Problems found while planning (e.g. a lab that does not exist, too many deletions).
    public var diagnostics: [Diagnostic]
    /// Digest of the configuration files the plan was made from (absent in plans of older versions).
    public var configurationDigest: String?
    /// The deletions of the plan before `--only` / `--lab` restricted it: what `--max-deletions` is checked against.
    public var unrestrictedDeletionCount: Int?
    /// The part of the factory the plan is for: absent for the whole factory; the factory's own work
    /// (`--factory-only`), or one shard's targets (`--shard I/N`). `apply` takes the lock and reads
    /// the inventory of this scope.
    public var scope: RunScope?

    public init(commit: String?, inventoryFingerprint: String, createdAt: Date, factory: FactoryTarget, settings: PlanSettings,
                actions: [PlanAction], diagnostics: [Diagnostic]) {
        self.formatVersion = Plan.currentFormatVersion
        self.commit = commit
        self.inventoryFingerprint = inventoryFingerprint
        self.createdAt = createdAt
        self.factoryLab = factory.lab.name
        self.factory = factory
        self.settings = settings
        self.actions = actions
        self.diagnostics = diagnostics
    }

    public func actions(in stage: Stage) -> [PlanAction] { actions.filter { $0.stage == stage } }

    /// The plan restricted to what `--only` and `--lab` name: actions about an image path that one
    /// of `paths` covers (by whole segments, as ImagePaths), or about a lab named in `labs`, plus the
    /// actions they depend on (the build a distribution waits for). A note says what was left out.
    public func restricting(paths: [String], labs: [String]) -> Plan {
        guard !paths.isEmpty || !labs.isEmpty else { return self }
        let labNames = Set(labs.map { $0.lowercased() })
        func wanted(_ action: PlanAction) -> Bool {
            let pathOK = paths.isEmpty || action.imagePath.map { path in paths.contains { ImagePath.covers($0, path, ignoringCase: true) } } == true
            // A lab restriction keeps the factory's own work (builds, captures) only as dependencies.
            let labOK = labNames.isEmpty || (action.stage != .build && action.stage != .snap && action.labID.map { labNames.contains($0.name.lowercased()) } == true)
            return pathOK && labOK
        }
        var kept = Set(actions.filter(wanted).map(\.id))
        let byID = Dictionary(actions.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var queue = Array(kept)
        while let id = queue.popLast() {
            for dependency in byID[id]?.dependsOn ?? [] where byID[dependency] != nil && kept.insert(dependency).inserted {
                queue.append(dependency)
            }
        }
        var restricted = self
        restricted.actions = actions.filter { kept.contains($0.id) }
        // --max-deletions guards the whole plan: one restricted run after another cannot get round it.
        restricted.unrestrictedDeletionCount = max(unrestrictedDeletionCount ?? 0, deletionCount)
        let left = actions.count - restricted.actions.count
        if left > 0 {
            var what: [String] = []
            if !paths.isEmpty { what.append("image paths " + paths.joined(separator: ", ")) }
            if !labs.isEmpty { what.append("labs " + labs.joined(separator: ", ")) }
            restricted.diagnostics.append(.note("Left out \(left) action\(left == 1 ? "" : "s") of the full plan: this run is restricted to \(what.joined(separator: " and ")).",
                                                hint: "Run without --only and --lab for everything."))
        }
        return restricted
    }

    /// The plan as a run of only `stages` executes it. An action that depends (directly or
    /// through others) on an action outside the selection could only be skipped, so it is left
    /// out here, and a note says which stage it waits for: a plan and its run agree.
    public func selecting(stages: Set<Stage>) -> Plan {
        guard stages != Set(Stage.allCases) else { return self }
        var selected = self
        var kept = Set(actions.filter { stages.contains($0.stage) }.map(\.id))
        let byID = Dictionary(actions.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var waitsFor: [String: Stage] = [:]  // left-out action id -> the stage it waits for
        var changed = true
        while changed {
            changed = false
            for action in actions where kept.contains(action.id) {
                guard let blocker = action.dependsOn.first(where: { byID[$0] != nil && !kept.contains($0) }) else { continue }
                kept.remove(action.id)
                waitsFor[action.id] = waitsFor[blocker] ?? byID[blocker]?.stage
                changed = true
            }
        }
        selected.actions = actions.filter { kept.contains($0.id) }
        let byStage = Dictionary(grouping: waitsFor, by: \.value)
        for (stage, left) in byStage.sorted(by: { $0.key < $1.key }) {
            let kinds = Dictionary(grouping: left.compactMap { byID[$0.key] }, by: \.stage)
                .sorted { $0.key < $1.key }.map { "\($0.value.count) \($0.key.rawValue)" }.joined(separator: ", ")
            selected.diagnostics.append(.note("Left out \(left.count) action\(left.count == 1 ? "" : "s") (\(kinds)): \(left.count == 1 ? "it waits" : "they wait") for the \(stage.rawValue) stage, which this run does not include.",
                                              hint: "Run `imagefactory \(stage.rawValue)` first, or `imagefactory run` for every stage."))
        }
        return selected
    }
    public var deletionCount: Int { actions.filter(\.deletesImage).count }
    /// The count `--max-deletions` is checked against: the whole plan's, even when restricted.
    public var guardedDeletionCount: Int { max(deletionCount, unrestrictedDeletionCount ?? 0) }
    /// Every action changes something; a plan without actions changes nothing.
    public var hasWrites: Bool { !actions.isEmpty }

    public static func decode(_ data: Data) throws -> Plan {
        struct Version: Decodable { var formatVersion: Int? }
        let version = try JSONDecoder().decode(Version.self, from: data).formatVersion ?? 0
        guard version >= 1 else { throw FactoryError.invalidInput("This file is not an imagefactory plan (no formatVersion).") }
        guard version >= currentFormatVersion else {
            throw FactoryError.invalidInput("The plan has format version \(version), made by an older imagefactory whose actions this version does not execute.",
                                            hint: "Make a new plan with `imagefactory plan --out FILE`.")
        }
        guard version <= currentFormatVersion else {
            throw FactoryError.invalidInput("The plan has format version \(version), newer than this imagefactory understands (\(currentFormatVersion)).",
                                            hint: "Apply it with the imagefactory version that made it, or make a new plan.")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let plan = try decoder.decode(Plan.self, from: data)
        var seen = Set<String>()
        for action in plan.actions where !seen.insert(action.id).inserted {
            throw FactoryError.invalidInput("The plan has two actions with the id \(action.id); every action's id must be unique.",
                                            hint: "Make a new plan with `imagefactory plan --out FILE` instead of editing one.")
        }
        return plan
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }
}

/// The settings a plan was made with (they shape the actions).
public struct PlanSettings: Codable, Sendable, Equatable {
    public var maxConcurrentJobs: Int
    public var imagesToSave: Int
    public var maxDeletions: Int
    public var timeoutMinutes: Int
    public var force: Bool
    /// `--retire-removed-labs`: retire the factory's images in labs no longer in Labs.json.
    public var retireRemovedLabs: Bool?

    public init(maxConcurrentJobs: Int, imagesToSave: Int, maxDeletions: Int, timeoutMinutes: Int, force: Bool) {
        self.maxConcurrentJobs = maxConcurrentJobs
        self.imagesToSave = imagesToSave
        self.maxDeletions = maxDeletions
        self.timeoutMinutes = timeoutMinutes
        self.force = force
    }
}

/// The tags the factory puts on what it makes. `ImagePath` is the original's, kept so existing
/// labs' images stay managed; only resources with it are ever retired.
public enum FactoryTag {
    public static let imagePath = "ImagePath"
    public static let ignore = "FactoryIgnore"
    public static let commit = "ImageFactoryCommit"
    public static let templateSha = "ImageFactoryTemplateSha"
    public static let runID = "ImageFactoryRunId"
    public static let imageName = "ImageFactoryImageName"
    /// On galleries and image definitions the factory made (only those it may delete when empty).
    public static let managedBy = "ImageFactoryManaged"
    /// On gallery versions: the VHD record a version was published from.
    public static let record = "ImageFactoryRecord"
    /// On galleries, definitions and versions: which factory made them (its lab's resource id,
    /// lower case), so factories sharing a gallery never retire each other's versions.
    public static let factory = "ImageFactoryFactory"
}

/// The factory's own state blobs in its container, beside the VHDs and records: never records,
/// never temporary, never in the inventory's fingerprint.
public enum FactoryStateBlobs {
    /// The blob whose lease is the lock.
    public static let lock = "imagefactory.lock"
    /// Who holds the lock (run, host, pid, since), so a refused run can say so.
    public static let holder = "imagefactory.lock.json"
    /// The target labs of the last run (`TargetsRecord`), so a lab removed from Labs.json is noticed.
    public static let targets = "imagefactory.targets.json"
    /// Leased by a shard while it merges its labs into the targets record (shards run at once).
    public static let targetsLock = "imagefactory.targets.lock"
    public static let all: Set<String> = [lock, holder, targets, targetsLock]
    /// Shards' locks: one lease blob per target under `targets/`, one holder record per shard run under `holders/`.
    public static let shardLocksPrefix = "imagefactory.locks/"
    public static let shardTargetLocksPrefix = shardLocksPrefix + "targets/"
    public static let shardHoldersPrefix = shardLocksPrefix + "holders/"

    /// Whether a blob of the factory's container is the factory's own state (never a record, a VHD or a temporary blob).
    public static func isState(_ name: String) -> Bool { all.contains(name) || name.hasPrefix(shardLocksPrefix) }
}

/// The labs a run delivered to, kept in the factory's storage after each run that changed
/// something: a lab that later leaves Labs.json still holds the factory's images, and the next
/// run reports it (and with `--retire-removed-labs` retires them).
public struct TargetsRecord: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1
    public var formatVersion: Int
    public var labs: [LabID]
    public var runId: String
    public var updatedAt: Date

    public init(labs: [LabID], runId: String, updatedAt: Date) {
        formatVersion = Self.currentFormatVersion
        self.labs = labs
        self.runId = runId
        self.updatedAt = updatedAt
    }
}

/// What a run executes of a plan: its stages, and what `--only` and `--lab` restrict it to. Applied
/// to the plan made before the lock and again to one made under it, so both agree.
public struct PlanFilter: Sendable, Equatable {
    public var stages: Set<Stage>
    public var paths: [String]
    public var labs: [String]

    public init(stages: Set<Stage> = Set(Stage.allCases), paths: [String] = [], labs: [String] = []) {
        self.stages = stages
        self.paths = paths
        self.labs = labs
    }

    public func apply(to plan: Plan) -> Plan { plan.restricting(paths: paths, labs: labs).selecting(stages: stages) }
}

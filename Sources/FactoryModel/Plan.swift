import Foundation

/// The factory's stages, in the order a run executes them.
public enum Stage: String, Codable, Sendable, CaseIterable, Comparable {
    case build, snap, distribute, cleanup, retire

    public static func < (a: Stage, b: Stage) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The closed set of things a run can do.
public enum ActionKind: String, Codable, Sendable {
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
    /// A VM in the factory lab with neither ImagePath nor FactoryIgnore tag: reported, left alone.
    case reportUnknownVM
    case deleteTemporaryBlob
    /// Delete a target lab's temporary container once distribution is done (the original did too).
    case deleteTemporaryContainer
    case pruneDeployments
    /// Delete a VHD and its record from the factory storage.
    case retireRecord
    /// Delete a custom image from a lab.
    case retireImage
}

/// One step of a plan, with the reason it is there.
public struct PlanAction: Codable, Sendable, Equatable, Identifiable {
    public var id: String
    public var stage: Stage
    public var kind: ActionKind
    /// Lab name (target or factory lab), when the action is about one.
    public var lab: String?
    public var labID: LabID?
    public var imagePath: String?
    public var imageName: String?
    public var vmName: String?
    /// A blob or other resource the action touches.
    public var resource: String?
    public var reason: String
    public var dependsOn: [String]
    /// A distribution to a lab in another region than the factory.
    public var crossRegion: Bool?

    public init(id: String, stage: Stage, kind: ActionKind, lab: String? = nil, labID: LabID? = nil, imagePath: String? = nil,
                imageName: String? = nil, vmName: String? = nil, resource: String? = nil, reason: String, dependsOn: [String] = [],
                crossRegion: Bool? = nil) {
        self.id = id
        self.stage = stage
        self.kind = kind
        self.lab = lab
        self.labID = labID
        self.imagePath = imagePath
        self.imageName = imageName
        self.vmName = vmName
        self.resource = resource
        self.reason = reason
        self.dependsOn = dependsOn
        self.crossRegion = crossRegion
    }

    /// Whether the action deletes an image (counted against --max-deletions).
    public var deletesImage: Bool { kind == .retireRecord || kind == .retireImage }
    /// Whether the action changes anything (a report changes nothing).
    public var isWrite: Bool { kind != .reportUnknownVM }
}

/// What a run would do: plain, versioned data computed from the configuration at a commit and
/// the inventory observed in the cloud. Printing, saving and diffing a plan need no backend.
public struct Plan: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var commit: String?
    /// Fingerprint of the inventory the plan was computed from; `apply` refuses a plan whose inventory changed.
    public var inventoryFingerprint: String
    public var createdAt: Date
    public var factoryLab: String
    public var settings: PlanSettings
    public var actions: [PlanAction]
    /// Problems found while planning (e.g. a lab that does not exist, too many deletions).
    public var diagnostics: [Diagnostic]
    /// Digest of the configuration files the plan was made from (absent in plans of older versions).
    public var configurationDigest: String?

    public init(commit: String?, inventoryFingerprint: String, createdAt: Date, factoryLab: String, settings: PlanSettings,
                actions: [PlanAction], diagnostics: [Diagnostic]) {
        self.formatVersion = Plan.currentFormatVersion
        self.commit = commit
        self.inventoryFingerprint = inventoryFingerprint
        self.createdAt = createdAt
        self.factoryLab = factoryLab
        self.settings = settings
        self.actions = actions
        self.diagnostics = diagnostics
    }

    public func actions(in stage: Stage) -> [PlanAction] { actions.filter { $0.stage == stage } }
    public var deletionCount: Int { actions.filter(\.deletesImage).count }
    public var hasWrites: Bool { actions.contains(where: \.isWrite) }

    public static func decode(_ data: Data) throws -> Plan {
        struct Version: Decodable { var formatVersion: Int? }
        let version = try JSONDecoder().decode(Version.self, from: data).formatVersion ?? 0
        guard version >= 1 else { throw FactoryError.invalidInput("This file is not an imagefactory plan (no formatVersion).") }
        guard version <= currentFormatVersion else {
            throw FactoryError.invalidInput("The plan has format version \(version), newer than this imagefactory understands (\(currentFormatVersion)).",
                                            hint: "Apply it with the imagefactory version that made it, or make a new plan.")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Plan.self, from: data)
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
}

/// The blobs of the factory lock, in the factory's container: never records, never temporary.
public enum FactoryLockBlobs {
    /// The blob whose lease is the lock.
    public static let lock = "imagefactory.lock"
    /// Who holds the lock (run, host, pid, since), so a refused run can say so.
    public static let holder = "imagefactory.lock.json"
    public static let all: Set<String> = [lock, holder]
}

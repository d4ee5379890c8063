import FactoryModel
import Foundation

/// How long the local cloud's operations take. Each long-running operation completes at a
/// moment stored with the resource, so state survives restarts and several processes agree.
public struct LatencyProfile: Codable, Sendable, Equatable {
    public var name: String
    /// Added to every request, like a network round trip (seconds).
    public var request: Double
    /// A lab VM deployment before artifacts start.
    public var deployment: Double
    /// Each artifact applied on a VM.
    public var artifact: Double
    /// Sysprep / deprovision shutting the VM down, or a stop (deallocate).
    public var shutdown: Double
    public var delete: Double
    /// Fixed part of a blob copy or disk export.
    public var copyBase: Double
    /// Size-proportional part of a copy: bytes of *data* (not holes) per second; 0 means no size cost.
    public var copyBytesPerSecond: Double
    public var customImage: Double
    public var galleryVersion: Double
    /// Read bandwidth of one source blob, shared fairly by every copy reading it at the same moment
    /// (Azure's target for a single page blob is 60 MiB/s); nil or 0: no limit per source.
    public var sourceBytesPerSecond: Double? = nil
    /// Virtual size of OS disks for Windows and Linux VMs, in bytes (whole MiB, as Azure requires).
    public var windowsDiskBytes: Int64
    public var linuxDiskBytes: Int64

    public static let instant = LatencyProfile(
        name: "instant", request: 0, deployment: 0, artifact: 0, shutdown: 0, delete: 0, copyBase: 0, copyBytesPerSecond: 0,
        customImage: 0, galleryVersion: 0, windowsDiskBytes: 8 << 20, linuxDiskBytes: 4 << 20)
    public static let fast = LatencyProfile(
        name: "fast", request: 0, deployment: 0.3, artifact: 0.05, shutdown: 0.1, delete: 0.05, copyBase: 0.1,
        copyBytesPerSecond: 0, customImage: 0.2, galleryVersion: 0.3, windowsDiskBytes: 127 << 20, linuxDiskBytes: 30 << 20)
    public static let realistic = LatencyProfile(
        name: "realistic", request: 0.05, deployment: 8, artifact: 2, shutdown: 3, delete: 2, copyBase: 2,
        copyBytesPerSecond: 52_428_800, customImage: 5, galleryVersion: 6, sourceBytesPerSecond: 62_914_560, windowsDiskBytes: 4 << 30, linuxDiskBytes: 2 << 30)

    public static func named(_ name: String) -> LatencyProfile? {
        switch name.lowercased() {
        case "instant": return .instant
        case "fast": return .fast
        case "realistic": return .realistic
        default: return nil
        }
    }

    func diskBytes(_ os: OSType) -> Int64 { os == .windows ? windowsDiskBytes : linuxDiskBytes }
}

/// ARM-like write throttling: a token bucket per subscription; empty means 429 with Retry-After.
public struct ThrottleSettings: Codable, Sendable, Equatable {
    public var capacity: Double
    public var refillPerSecond: Double
    public var enabled: Bool

    /// ARM's published subscription write limits: bucket of 200, 10 per second.
    public init(capacity: Double, refillPerSecond: Double, enabled: Bool) {
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.enabled = enabled
    }

    public static let azure = ThrottleSettings(capacity: 200, refillPerSecond: 10, enabled: true)
    public static let off = ThrottleSettings(capacity: 0, refillPerSecond: 0, enabled: false)
}

/// The kinds of operation faults can be aimed at.
public enum OperationKind: String, Codable, Sendable, CaseIterable {
    case read, deploy, vmAction, vmDelete, export, blobWrite, copy, customImage, imageDelete, gallery, deployment
}

/// Seeded fault injection: the same seed gives the same faults, whatever the order of requests.
public struct FaultSettings: Codable, Sendable, Equatable {
    public struct Rates: Codable, Sendable, Equatable {
        /// 500/503 answers.
        public var transient: Double = 0
        /// 429 answers (on top of real throttling).
        public var throttle: Double = 0
        /// A request that hangs, then fails with 408 after `timeoutSeconds`.
        public var timeout: Double = 0
        /// A copy (or export) that fails part-way.
        public var copyFailure: Double = 0
        /// An artifact that fails on a VM.
        public var artifactFailure: Double = 0
        /// A long-running create that ends Failed.
        public var operationFailure: Double = 0
        /// One region's replication of a gallery version fails (the others complete).
        public var replicationFailure: Double = 0
        public init() {}
    }

    public var seed: UInt64
    public var rates: [OperationKind: Rates]
    public var timeoutSeconds: Double

    public init(seed: UInt64 = 1, rates: [OperationKind: Rates] = [:], timeoutSeconds: Double = 0.5) {
        self.seed = seed
        self.rates = rates
        self.timeoutSeconds = timeoutSeconds
    }

    public static let none = FaultSettings()

    /// Parses `seed=42;copy.copyFailure=0.2;*.transient=0.05` (kind `*` means every kind).
    public static func parse(_ text: String) throws -> FaultSettings {
        var settings = FaultSettings()
        for part in text.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw FactoryError.invalidInput("Fault setting \"\(part)\" is not key=value.") }
            if kv[0] == "seed" {
                guard let seed = UInt64(kv[1]) else { throw FactoryError.invalidInput("Fault seed \"\(kv[1])\" is not a number.") }
                settings.seed = seed
                continue
            }
            if kv[0] == "timeoutSeconds", let v = Double(kv[1]) { settings.timeoutSeconds = v; continue }
            let keyParts = kv[0].split(separator: ".").map(String.init)
            guard keyParts.count == 2, let rate = Double(kv[1]), (0...1).contains(rate) else {
                throw FactoryError.invalidInput("Fault setting \"\(part)\" should look like kind.fault=0.1 with a rate from 0 to 1.")
            }
            let kinds: [OperationKind]
            if keyParts[0] == "*" { kinds = OperationKind.allCases } else {
                guard let kind = OperationKind(rawValue: keyParts[0]) else {
                    throw FactoryError.invalidInput("Unknown operation kind \"\(keyParts[0])\" in fault settings.",
                                                    hint: "Kinds: \(OperationKind.allCases.map(\.rawValue).joined(separator: ", ")), or *.")
                }
                kinds = [kind]
            }
            for kind in kinds {
                var r = settings.rates[kind] ?? Rates()
                switch keyParts[1] {
                case "transient": r.transient = rate
                case "throttle": r.throttle = rate
                case "timeout": r.timeout = rate
                case "copyFailure": r.copyFailure = rate
                case "artifactFailure": r.artifactFailure = rate
                case "operationFailure": r.operationFailure = rate
                case "replicationFailure": r.replicationFailure = rate
                default: throw FactoryError.invalidInput("Unknown fault \"\(keyParts[1])\".",
                                                         hint: "Faults: transient, throttle, timeout, copyFailure, artifactFailure, operationFailure, replicationFailure.")
                }
                settings.rates[kind] = r
            }
        }
        return settings
    }
}

/// How the local cloud replicates gallery versions to one region.
public struct GalleryRegionSettings: Codable, Sendable, Equatable {
    /// The region's replication takes this many times the profile's `galleryVersion` (default 1;
    /// a region other than the source also waits a little longer, as in Azure).
    public var delayFactor: Double?
    /// The region's first N replication attempts of every version fail (tests of "retried alone").
    public var failFirstAttempts: Int?
    /// Each attempt fails with this probability (seeded, like the other faults).
    public var replicationFailure: Double?

    public init(delayFactor: Double? = nil, failFirstAttempts: Int? = nil, replicationFailure: Double? = nil) {
        self.delayFactor = delayFactor
        self.failFirstAttempts = failFirstAttempts
        self.replicationFailure = replicationFailure
    }
}

/// Everything that shapes one local cloud.
public struct LocalCloudSettings: Codable, Sendable, Equatable {
    public var latency: LatencyProfile
    public var throttle: ThrottleSettings
    public var faults: FaultSettings
    /// Largest number of deployments Azure keeps per resource group.
    public var maxDeploymentsPerResourceGroup: Int
    /// Gallery replication per region (`cloud.json`: `"galleryRegions": {"northeurope": {"delayFactor": 3, "failFirstAttempts": 1}}`).
    public var galleryRegions: [String: GalleryRegionSettings] = [:]
    /// For tests of interruption (`IMAGEFACTORY_LOCAL_HOLD_AFTER`): once an operation of this kind
    /// succeeded, the request that made it never returns (until cancelled), and the cloud's
    /// `onHold` is told, so a test knows the exact moment to kill the process. Never persisted.
    public var holdAfter: String? = nil
    /// Whether a disk's read SAS shows a Content-MD5, and so the VHD exported from it (`cloud.json`:
    /// `"disksHaveContentMD5": false`). Azure does not promise one for a managed disk (where it shows
    /// one, it can be stale: the VM changed the disk since it was set), so the factory must work without.
    public var disksHaveContentMD5 = true

    private enum CodingKeys: String, CodingKey { case latency, throttle, faults, maxDeploymentsPerResourceGroup, galleryRegions, disksHaveContentMD5 }

    /// Every key is optional in `cloud.json`: what it leaves out keeps its default.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = LocalCloudSettings()
        latency = try c.decodeIfPresent(LatencyProfile.self, forKey: .latency) ?? defaults.latency
        throttle = try c.decodeIfPresent(ThrottleSettings.self, forKey: .throttle) ?? defaults.throttle
        faults = try c.decodeIfPresent(FaultSettings.self, forKey: .faults) ?? defaults.faults
        maxDeploymentsPerResourceGroup = try c.decodeIfPresent(Int.self, forKey: .maxDeploymentsPerResourceGroup) ?? defaults.maxDeploymentsPerResourceGroup
        galleryRegions = try c.decodeIfPresent([String: GalleryRegionSettings].self, forKey: .galleryRegions) ?? [:]
        disksHaveContentMD5 = try c.decodeIfPresent(Bool.self, forKey: .disksHaveContentMD5) ?? true
    }

    public init(latency: LatencyProfile = .fast, throttle: ThrottleSettings = .azure, faults: FaultSettings = .none,
                maxDeploymentsPerResourceGroup: Int = 800) {
        self.latency = latency
        self.throttle = throttle
        self.faults = faults
        self.maxDeploymentsPerResourceGroup = maxDeploymentsPerResourceGroup
    }

    /// Settings from the environment: `IMAGEFACTORY_LOCAL_LATENCY` (instant|fast|realistic),
    /// `IMAGEFACTORY_LOCAL_FAULTS` (see `FaultSettings.parse`), `IMAGEFACTORY_LOCAL_THROTTLE` (off|azure|CAPACITY/REFILL),
    /// over an optional `cloud.json` in the state directory.
    public static func resolve(stateDirectory: URL, environment: [String: String]) throws -> LocalCloudSettings {
        var settings = LocalCloudSettings()
        let file = stateDirectory.appendingPathComponent("cloud.json")
        if let data = try? Data(contentsOf: file) {
            do {
                settings = try JSONDecoder().decode(LocalCloudSettings.self, from: data)
            } catch {
                throw FactoryError.invalidInput("\(file.path) is not valid local cloud settings: \(error)",
                                                file: file.path, hint: "Fix or delete the file; `imagefactory local reset` recreates the defaults.")
            }
        }
        if let name = environment["IMAGEFACTORY_LOCAL_LATENCY"], !name.isEmpty {
            guard let profile = LatencyProfile.named(name) else {
                throw FactoryError.invalidInput("IMAGEFACTORY_LOCAL_LATENCY=\(name) is not a latency profile.", hint: "Use instant, fast or realistic.")
            }
            settings.latency = profile
        }
        if let hold = environment["IMAGEFACTORY_LOCAL_HOLD_AFTER"], !hold.isEmpty { settings.holdAfter = hold }
        if let faults = environment["IMAGEFACTORY_LOCAL_FAULTS"], !faults.isEmpty {
            settings.faults = try FaultSettings.parse(faults)
        }
        if let throttle = environment["IMAGEFACTORY_LOCAL_THROTTLE"], !throttle.isEmpty {
            switch throttle.lowercased() {
            case "off": settings.throttle = .off
            case "azure": settings.throttle = .azure
            default:
                let parts = throttle.split(separator: "/").compactMap { Double($0) }
                guard parts.count == 2 else {
                    throw FactoryError.invalidInput("IMAGEFACTORY_LOCAL_THROTTLE=\(throttle) is not off, azure or CAPACITY/REFILL_PER_SECOND.")
                }
                settings.throttle = ThrottleSettings(capacity: parts[0], refillPerSecond: parts[1], enabled: true)
            }
        }
        return settings
    }
}

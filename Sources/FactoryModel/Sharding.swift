import Foundation

// Sharding: one factory run as N cooperating jobs of a CI engine. The build job (build, snap and
// the factory lab's own cleanup and retirement) runs once; then N shard jobs each distribute to,
// clean up and retire in their own targets. Which targets are a shard's is a pure function of the
// configuration at the commit and N (never of the cloud's state, which the build job changes), so
// every job of a run computes the same assignment.

/// Which shard of how many a run is: `--shard I/N` (1-based), or `--shard auto` read from the CI's
/// own variables (Azure Pipelines' job position, a Kubernetes indexed Job's completion index).
public struct ShardSelection: Codable, Sendable, Equatable, CustomStringConvertible {
    /// 1-based.
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    public var description: String { "\(index)/\(count)" }

    /// More shards than this is a typo, not a factory.
    public static let maximumCount = 1000

    /// Azure Pipelines, a job with `strategy: parallel: N`: this job's position, 1-based.
    public static let azurePipelinesPosition = "SYSTEM_JOBPOSITIONINPHASE"
    /// Azure Pipelines: how many jobs the phase runs.
    public static let azurePipelinesTotal = "SYSTEM_TOTALJOBSINPHASE"
    /// Kubernetes, an indexed Job: this pod's completion index, 0-based (the count is `--shard-count`).
    public static let kubernetesIndex = "JOB_COMPLETION_INDEX"
    /// Every variable `--shard auto` reads, in the order it reads them.
    public static let autoVariables = [azurePipelinesPosition, azurePipelinesTotal, kubernetesIndex]

    /// Parses `--shard` (`I/N` or `auto`) with `--shard-count`; `auto` reads `environment`. Every
    /// refusal says what was wrong and, for `auto`, which variables it read and what they held.
    public static func resolve(_ text: String, count: Int?, environment: [String: String]) throws -> ShardSelection {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let count, !(1...maximumCount).contains(count) {
            throw ShardSelectionError("--shard-count \(count) is not a number of shards: use 1 to \(maximumCount).")
        }
        guard trimmed.lowercased() == "auto" else {
            let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let index = Int(parts[0]), let total = Int(parts[1]) else {
                throw ShardSelectionError("--shard \(text) is not a shard: use I/N (1-based, e.g. 2/4) or auto.")
            }
            let selection = try checked(index: index, count: total, what: "--shard \(text)")
            if let count, count != total {
                throw ShardSelectionError("--shard \(text) says \(total) shards but --shard-count says \(count): give one of them (--shard-count goes with --shard auto).")
            }
            return selection
        }
        func value(_ name: String) -> String? {
            environment[name].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        let read = autoVariables.map { "\($0)=\(value($0) ?? "(unset)")" }.joined(separator: ", ")
        if let position = value(azurePipelinesPosition) {
            guard let index = Int(position) else {
                throw ShardSelectionError("--shard auto: \(azurePipelinesPosition) is '\(position)', not a number (read \(read)).")
            }
            let totalText = value(azurePipelinesTotal)
            guard let total = totalText.flatMap(Int.init) ?? count else {
                throw ShardSelectionError("--shard auto: \(azurePipelinesPosition) is set but \(azurePipelinesTotal) is \(totalText.map { "'\($0)', not a number" } ?? "unset") (read \(read)).",
                                          hint: "Run it in an Azure Pipelines job with `strategy: parallel: N`, or pass --shard-count N.")
            }
            if let count, let stated = totalText.flatMap(Int.init), stated != count {
                throw ShardSelectionError("--shard auto: \(azurePipelinesTotal) is \(stated) but --shard-count says \(count) (read \(read)).",
                                          hint: "Leave out --shard-count in Azure Pipelines: the job says how many.")
            }
            return try checked(index: index, count: total, what: "--shard auto (read \(read))")
        }
        if let completion = value(kubernetesIndex) {
            guard let zeroBased = Int(completion), zeroBased >= 0 else {
                throw ShardSelectionError("--shard auto: \(kubernetesIndex) is '\(completion)', not a 0-based index (read \(read)).")
            }
            guard let count else {
                throw ShardSelectionError("--shard auto: \(kubernetesIndex) is set but Kubernetes does not say how many shards there are (read \(read)).",
                                          hint: "Pass --shard-count N, the indexed Job's completions.")
            }
            return try checked(index: zeroBased + 1, count: count, what: "--shard auto (read \(read); \(kubernetesIndex) is 0-based)")
        }
        throw ShardSelectionError("--shard auto found no shard in the environment (read \(read)).",
                                  hint: "Use it in an Azure Pipelines job with `strategy: parallel: N`, or a Kubernetes indexed Job with --shard-count N; in a GitHub Actions matrix pass --shard ${{ matrix.shard }}/N.")
    }

    private static func checked(index: Int, count: Int, what: String) throws -> ShardSelection {
        guard (1...maximumCount).contains(count) else {
            throw ShardSelectionError("\(what): \(count) shards is not a number of shards: use 1 to \(maximumCount).")
        }
        guard (1...count).contains(index) else {
            throw ShardSelectionError("\(what): shard \(index) of \(count) does not exist: shards are numbered 1 to \(count).")
        }
        return ShardSelection(index: index, count: count)
    }
}

/// A wrong or missing shard setting: a usage error (exit 64) whose message names what was read.
public struct ShardSelectionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { message + (hint.map { " \($0)" } ?? "") }
}

/// One target a shard may own: a lab of Labs.json or a gallery of its Galleries, with its
/// subscription and the jobs a run may need for it, estimated from the configuration alone.
public struct ShardTarget: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable, Hashable {
        case lab, gallery
    }

    public var kind: Kind
    /// The lab's or gallery's name.
    public var name: String
    /// `TargetLab.key` or `GalleryTarget.key`: unique among the targets.
    public var key: String
    /// Lowercased: ARM's write bucket is per subscription.
    public var subscription: String
    /// The work estimate: a lab's subscribed templates (one copy and image each), a gallery's
    /// templates × regions (each version replicates to every region). At least 1.
    public var jobs: Int

    public init(kind: Kind, name: String, key: String, subscription: String, jobs: Int) {
        self.kind = kind
        self.name = name
        self.key = key
        self.subscription = subscription.lowercased()
        self.jobs = max(1, jobs)
    }

    /// How reports and actions name it: the lab's name, or `gallery NAME`.
    public var label: String { kind == .lab ? name : "gallery \(name)" }

    /// The target's name as a lock blob names it (lowercased, unique).
    public var lockName: String { "\(kind.rawValue)/\(key)" }
}

extension FactoryConfiguration {
    /// Every target of the configuration, one per lab (entries naming the same lab count once, their
    /// work summed) and one per gallery, sorted by key: the input of `ShardAssignment`.
    public var shardTargets: [ShardTarget] {
        var byKey: [String: ShardTarget] = [:]
        for lab in labs {
            let key = ShardTarget.Kind.lab.rawValue + "/" + lab.key
            if var existing = byKey[key] {
                existing.jobs += max(1, lab.images.count)
                byKey[key] = existing
            } else {
                byKey[key] = ShardTarget(kind: .lab, name: lab.labName, key: lab.key, subscription: lab.subscriptionId, jobs: lab.images.count)
            }
        }
        for gallery in galleries {
            let key = ShardTarget.Kind.gallery.rawValue + "/" + gallery.key
            let jobs = gallery.images.count * max(1, gallery.publishingRegions.regions.count)
            if var existing = byKey[key] {
                existing.jobs += max(1, jobs)
                byKey[key] = existing
            } else {
                byKey[key] = ShardTarget(kind: .gallery, name: gallery.galleryName, key: gallery.key, subscription: gallery.subscriptionId, jobs: jobs)
            }
        }
        return byKey.values.sorted { ($0.kind.rawValue, $0.key) < ($1.kind.rawValue, $1.key) }
    }
}

/// Which targets each of N shards owns. Deterministic from the targets and N (ties broken by keys,
/// never by Labs.json's order), so every job of a run computes the same one:
///
/// 1. Targets are grouped by subscription: ARM throttles writes per subscription, so a subscription
///    stays in one shard and two shards never draw on one bucket...
/// 2. ...unless the subscription alone holds more than the fair share (all jobs / N): then it is cut
///    into ⌈its jobs / fair share⌉ pieces, balanced by jobs (largest target first), and only those
///    pieces may land on different shards.
/// 3. The groups and pieces go, largest first, each onto the shard with the fewest jobs so far
///    (longest-processing-time first; the lowest shard number on a tie).
public struct ShardAssignment: Sendable, Equatable {
    public struct Shard: Sendable, Equatable {
        /// 1-based.
        public var index: Int
        /// Sorted by kind, then key.
        public var targets: [ShardTarget]
        public var jobs: Int
        /// Sorted, lowercased.
        public var subscriptions: [String]
    }

    public var count: Int
    public var shards: [Shard]
    public var totalJobs: Int
    /// Subscriptions cut across shards because each alone exceeded the fair share.
    public var splitSubscriptions: [String]

    public init(configuration: FactoryConfiguration, count: Int) {
        self.init(targets: configuration.shardTargets, count: count)
    }

    public init(targets: [ShardTarget], count: Int) {
        precondition(count >= 1, "a factory has at least one shard")
        self.count = count
        var unique: [String: ShardTarget] = [:]
        for target in targets { unique[target.lockName] = unique[target.lockName] ?? target }
        let all = unique.values.sorted { $0.lockName < $1.lockName }
        totalJobs = all.reduce(0) { $0 + $1.jobs }
        let fair = Double(totalJobs) / Double(count)

        // A unit goes to one shard whole: a subscription, or a piece of one that is too large.
        struct Unit {
            var targets: [ShardTarget]
            var jobs: Int
            var firstKey: String
        }
        func unit(_ targets: [ShardTarget]) -> Unit {
            let sorted = targets.sorted { $0.lockName < $1.lockName }
            // Ties go by subscription, then by target: the same order on every job.
            return Unit(targets: sorted, jobs: sorted.reduce(0) { $0 + $1.jobs }, firstKey: (sorted.first?.subscription ?? "") + "|" + (sorted.first?.lockName ?? ""))
        }
        /// Longest processing time first: each item, largest first (then by key), onto the lightest bin (then the lowest).
        func pack<T>(_ items: [T], into bins: Int, jobs: (T) -> Int, key: (T) -> String) -> [[T]] {
            var loads = Array(repeating: 0, count: bins)
            var result = Array(repeating: [T](), count: bins)
            let ordered = items.sorted { a, b in jobs(a) != jobs(b) ? jobs(a) > jobs(b) : key(a) < key(b) }
            for item in ordered {
                let lightest = loads.indices.min { (loads[$0], $0) < (loads[$1], $1) }!
                result[lightest].append(item)
                loads[lightest] += jobs(item)
            }
            return result
        }

        var units: [Unit] = []
        var split: [String] = []
        let bySubscription = Dictionary(grouping: all, by: \.subscription)
        for subscription in bySubscription.keys.sorted() {
            let members = bySubscription[subscription]!
            let jobs = members.reduce(0) { $0 + $1.jobs }
            if count > 1, members.count > 1, Double(jobs) > fair {
                let pieces = min(members.count, Int((Double(jobs) / fair).rounded(.up)))
                let parts = pack(members, into: pieces, jobs: \.jobs, key: \.lockName).filter { !$0.isEmpty }
                if parts.count > 1 { split.append(subscription) }
                units += parts.map(unit)
            } else {
                units.append(unit(members))
            }
        }
        let bins = pack(units, into: count, jobs: \.jobs, key: \.firstKey)
        shards = bins.enumerated().map { offset, units in
            let targets = units.flatMap(\.targets).sorted { $0.lockName < $1.lockName }
            return Shard(index: offset + 1, targets: targets, jobs: targets.reduce(0) { $0 + $1.jobs },
                         subscriptions: Array(Set(targets.map(\.subscription))).sorted())
        }
        splitSubscriptions = split
    }

    /// Shard `index` (1-based).
    public func shard(_ index: Int) -> Shard { shards[index - 1] }

    /// A shard's estimated share of the whole factory's work, 0 to 1.
    public func share(of shard: Shard) -> Double {
        totalJobs == 0 ? 0 : Double(shard.jobs) / Double(totalJobs)
    }

    /// What a run of shard `selection` owns.
    public func scope(_ selection: ShardSelection) -> ShardScope {
        let shard = shard(selection.index)
        return ShardScope(index: selection.index, count: selection.count, targets: shard.targets)
    }
}

/// What one shard owns, as a run of it works with: its targets (and through them its labs,
/// galleries and subscriptions).
public struct ShardScope: Codable, Sendable, Equatable {
    public var index: Int
    public var count: Int
    public var targets: [ShardTarget]

    public init(index: Int, count: Int, targets: [ShardTarget]) {
        self.index = index
        self.count = count
        self.targets = targets
    }

    public var selection: ShardSelection { ShardSelection(index: index, count: count) }
    /// `TargetLab.key`s.
    public var labKeys: Set<String> { Set(targets.filter { $0.kind == .lab }.map(\.key)) }
    /// `GalleryTarget.key`s.
    public var galleryKeys: Set<String> { Set(targets.filter { $0.kind == .gallery }.map(\.key)) }
    public var subscriptions: [String] { Array(Set(targets.map(\.subscription))).sorted() }
    /// Lab names, then `gallery NAME`s: how reports name what the shard owned.
    public var labels: [String] {
        targets.filter { $0.kind == .lab }.map(\.label).sorted() + targets.filter { $0.kind == .gallery }.map(\.label).sorted()
    }
    /// "shard 2/4: 3 labs, 1 gallery in 2 subscriptions"
    public var summary: String {
        let labs = targets.filter { $0.kind == .lab }.count
        let galleries = targets.count - labs
        var parts = ["\(labs) lab\(labs == 1 ? "" : "s")"]
        if galleries > 0 { parts.append("\(galleries) galler\(galleries == 1 ? "y" : "ies")") }
        let subscriptions = self.subscriptions.count
        return "shard \(index)/\(count): \(parts.joined(separator: ", ")) in \(subscriptions) subscription\(subscriptions == 1 ? "" : "s")"
    }
}

/// The part of the factory a run works on.
public enum RunScope: Sendable, Equatable {
    /// Everything: build, snap, and every target's distribution, cleanup and retirement (a run
    /// without `--shard` or `--factory-only`).
    case whole
    /// The factory's own work only (`--factory-only`, the build job of a sharded pipeline): builds,
    /// captures, the factory lab's cleanup (VMs, interrupted captures, deployment history), the
    /// retirement of VHD records and of the factory lab's images, and labs removed from Labs.json.
    case factory
    /// One shard's targets only (`--shard I/N`): their distribution, cleanup and retirement.
    case shard(ShardScope)

    /// Whether the run does the factory's own work (everything but a shard does).
    public var includesFactoryWork: Bool {
        if case .shard = self { return false }
        return true
    }

    /// Whether the run works in target labs and galleries.
    public var includesTargets: Bool { self != .factory }

    public var shard: ShardScope? {
        if case .shard(let scope) = self { return scope }
        return nil
    }
}

extension RunScope: Codable {
    private enum CodingKeys: String, CodingKey { case kind, shard }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "whole": self = .whole
        case "factory": self = .factory
        case "shard": self = .shard(try c.decode(ShardScope.self, forKey: .shard))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "Unknown run scope '\(other)': use whole, factory or shard.")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .whole: try c.encode("whole", forKey: .kind)
        case .factory: try c.encode("factory", forKey: .kind)
        case .shard(let scope):
            try c.encode("shard", forKey: .kind)
            try c.encode(scope, forKey: .shard)
        }
    }
}

extension FactoryConfiguration {
    /// The configuration a run of `scope` plans from: a shard's labs and galleries only; none for
    /// the factory's own work; everything for a whole run. Templates and settings stay whole.
    public func restricted(to scope: RunScope) -> FactoryConfiguration {
        var restricted = self
        switch scope {
        case .whole:
            break
        case .factory:
            restricted.labs = []
            restricted.galleries = []
        case .shard(let shard):
            let labs = shard.labKeys
            let galleries = shard.galleryKeys
            restricted.labs = self.labs.filter { labs.contains($0.key) }
            restricted.galleries = self.galleries.filter { galleries.contains($0.key) }
        }
        return restricted
    }
}

import FactoryEngine
import FactoryModel
import Foundation

/// The versioned JSON report of a run (`--report-json`): every action with its stage, target,
/// result, duration and error. Built from a `RunSummary`; renderers below turn it into JUnit XML
/// and a Markdown summary.
public struct RunReport: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public enum Result: String, Codable, Sendable {
        /// Every action succeeded and nothing is in error.
        case succeeded
        /// Some actions failed, but every build and capture succeeded: new images exist, not everywhere yet.
        case partiallySucceeded
        case failed
    }

    public struct Action: Codable, Sendable, Equatable {
        public var id: String
        public var stage: Stage
        public var kind: ActionKind
        /// The lab (or factory lab) the action is about.
        public var target: String?
        public var imagePath: String?
        public var imageName: String?
        public var result: ActionResult.Outcome
        public var durationSeconds: Double
        public var error: String?
        public var reason: String
        public var crossRegion: Bool?
        /// For a gallery publish: the version and each region's replication state when the action ended.
        public var galleryVersion: String?
        public var replication: [RegionReplication]?
    }

    public var formatVersion: Int
    public var runId: String
    public var commit: String?
    public var startedAt: Date
    public var finishedAt: Date
    public var result: Result
    public var actions: [Action]
    public var diagnostics: [Diagnostic]
    /// The cloud the run talked to, and how much (absent for the embedded local cloud and in older reports).
    public var backend: Backend?
    /// Set when the run was one shard of a factory split across parallel jobs (`--shard I/N`):
    /// which shard, of how many, and what it owned, so `report merge` can say which one failed or is missing.
    public var shard: Shard?
    /// Set on the report `report merge` makes of a sharded run: each report it combined (the build job's,
    /// each shard's) and each shard that is missing, so people and tools see which shard failed. See `ReportMerge`.
    public var mergedFrom: [MergedPart]?

    /// One shard's identity and assignment.
    public struct Shard: Codable, Sendable, Equatable {
        /// 1-based.
        public var index: Int
        public var count: Int
        /// The subscriptions whose targets (labs, galleries) this shard owned, lowercased.
        public var subscriptions: [String]
        /// The targets this shard owned: lab names and `gallery NAME`.
        public var targets: [String]
        public init(index: Int, count: Int, subscriptions: [String], targets: [String]) {
            self.index = index
            self.count = count
            self.subscriptions = subscriptions
            self.targets = targets
        }
    }

    /// What a run sent to Azure: its correlation id (in every request's `x-ms-correlation-request-id`,
    /// to give Azure support) and its request counts.
    public struct Backend: Codable, Sendable, Equatable {
        public var kind: String
        public var correlationId: String?
        public var armReads: Int
        public var armWrites: Int
        public var storageReads: Int
        public var storageWrites: Int
        public var retries: Int
        public var throttled: Int
        public init(kind: String, correlationId: String?, armReads: Int, armWrites: Int, storageReads: Int, storageWrites: Int, retries: Int, throttled: Int) {
            self.kind = kind
            self.correlationId = correlationId
            self.armReads = armReads
            self.armWrites = armWrites
            self.storageReads = storageReads
            self.storageWrites = storageWrites
            self.retries = retries
            self.throttled = throttled
        }
    }

    public init(summary: RunSummary, startedAt: Date, finishedAt: Date) {
        formatVersion = RunReport.currentFormatVersion
        runId = summary.runID
        commit = summary.commit
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        actions = summary.results.map {
            Action(id: $0.action.id, stage: $0.action.stage, kind: $0.action.kind, target: $0.action.lab, imagePath: $0.action.imagePath,
                   imageName: $0.action.imageName, result: $0.outcome, durationSeconds: ($0.duration * 1000).rounded() / 1000,
                   error: $0.outcome == .succeeded ? nil : $0.message, reason: $0.action.reason, crossRegion: $0.action.crossRegion,
                   galleryVersion: $0.published?.id.version, replication: $0.published?.replication)
        }
        diagnostics = summary.diagnostics
        result = RunReport.classify(actions: actions, diagnostics: diagnostics)
    }

    /// The documented rule: succeeded when nothing failed; partially succeeded when only
    /// distribution, cleanup or retirement actions failed while some action succeeded;
    /// failed otherwise (a build or capture failed, nothing succeeded, or a configuration error).
    public static func classify(actions: [Action], diagnostics: [Diagnostic]) -> Result {
        let failed = actions.filter { $0.result == .failed }
        if failed.isEmpty && !diagnostics.hasErrors { return .succeeded }
        let buildFailed = failed.contains { $0.stage == .build || $0.stage == .snap }
        let anySucceeded = actions.contains { $0.result == .succeeded }
        if !buildFailed && anySucceeded { return .partiallySucceeded }
        return .failed
    }

    public var failedActions: [Action] { actions.filter { $0.result == .failed } }
    public var durationSeconds: Double { finishedAt.timeIntervalSince(startedAt) }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }

    /// Reads a report written by `--report-json`. A file that is no run report (a plan, JUnit XML) or a
    /// report of a newer format is refused with a message saying so, never half read.
    public static func decode(_ data: Data) throws -> RunReport {
        struct Probe: Decodable {
            var formatVersion: Int?
            var runId: String?
            var result: String?
        }
        guard let probe = try? JSONDecoder().decode(Probe.self, from: data), let version = probe.formatVersion,
              probe.runId != nil, probe.result != nil else {
            throw FactoryError.invalidInput("This file is not an imagefactory run report.",
                                            hint: "Give the JSON files written by --report-json (not the --junit or --summary-md ones, nor a plan).")
        }
        guard version <= currentFormatVersion else {
            throw FactoryError.invalidInput("The report has format version \(version), newer than this imagefactory understands (\(currentFormatVersion)).",
                                            hint: "Use the imagefactory version that wrote the reports.")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(RunReport.self, from: data)
        } catch let error as DecodingError {
            throw FactoryError.invalidInput("The run report does not decode: \(describe(error)).",
                                            hint: "Give the JSON files written by --report-json, unedited.")
        }
    }

    /// A decoding error in a sentence: where in the JSON, and what was wrong.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "at the top" : "at \(keys.hasPrefix(".") ? String(keys.dropFirst()) : keys)"
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(key.stringValue) is missing \(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(context.debugDescription) (\(path(context)))"
        @unknown default: return "\(error)"
        }
    }
}

import FactoryEngine
import FactoryModel
import Foundation

extension RunReport {
    /// One report `report merge` combined, or a shard it expected and did not get.
    public struct MergedPart: Codable, Sendable, Equatable {
        public enum Outcome: String, Codable, Sendable {
            case succeeded, partiallySucceeded, failed
            /// No report of this shard was given.
            case missing
        }

        /// 1-based; nil for a report of a job that was not a shard (the build job's).
        public var shard: Int?
        public var shardCount: Int?
        public var result: Outcome
        /// The run id of the report used; nil when the shard is missing.
        public var runId: String?
        /// The file the report came from, as given.
        public var source: String?
        public var actions: Int
        public var failed: Int
        /// Older reports of the same shard (a retried job) that this one replaced: their files.
        public var superseded: [String]?

        public init(shard: Int?, shardCount: Int?, result: Outcome, runId: String?, source: String?, actions: Int, failed: Int,
                    superseded: [String]? = nil) {
            self.shard = shard
            self.shardCount = shardCount
            self.result = result
            self.runId = runId
            self.source = source
            self.actions = actions
            self.failed = failed
            self.superseded = superseded
        }

        /// "shard 2 of 4", or "run ID" for a job that was not a shard.
        public var label: String {
            if let shard { return "shard \(shard) of \(shardCount ?? shard)" }
            return "run \(runId ?? "?")"
        }
    }
}

/// Combines the JSON reports of a factory split across parallel jobs (the build job's, then one per
/// `run --shard I/N`) into the one report a single run would have written: `imagefactory report merge`.
/// Pure: reports in, a report out; reading files and rendering are the CLI's.
///
/// The rules:
/// - **Which reports belong together.** Reports with a `shard` block are shards; the others (the build
///   job's) are taken as they are. Every report must be of the same commit (a report without one, of
///   a run that stopped before reading the configuration, goes with any), and the shards must agree on
///   how many shards there are (and with `expectedShards` when given). Otherwise nothing is merged: the
///   error names the files and says what to give instead.
/// - **A missing shard.** A shard in 1...count with no report is missing: an error diagnostic says
///   "shard 3 of 4 is missing", and the merged result is failed, whatever the others did. With
///   `expectedShards`, shards are expected even when no shard report came at all.
/// - **The same shard twice.** A retried job leaves two reports of one shard: the newest by
///   `finishedAt` (then by run id) is the shard's outcome, and a warning names the ones it replaced.
///   Every run plans again from the cloud, so the newest one saw, and redid, what the earlier left
///   undone. The same report given twice (the same run id) counts once, silently.
/// - **The merged report.** Actions: the other jobs' (by start time), then each shard's in shard order.
///   Diagnostics: the merge's own first, then every report's, each once. `startedAt` the earliest,
///   `finishedAt` the latest, `backend` counts summed (its correlation id kept only when all agree),
///   `shard` nil, `mergedFrom` one part per job and per missing shard. The result follows
///   `RunReport.classify` as a single run's does, except that a missing shard makes it failed.
public enum ReportMerge {
    /// One report to merge and where it came from (a file name, for messages).
    public struct Input: Sendable, Equatable {
        public var source: String
        public var report: RunReport
        public init(source: String, report: RunReport) {
            self.source = source
            self.report = report
        }
    }

    /// Merges `inputs` into one report with run id `runID`. Throws a `FactoryError` (invalid input) listing
    /// every reason the reports do not belong to one run; never merges part of them.
    public static func merge(_ inputs: [Input], expectedShards: Int? = nil, runID: String) throws -> RunReport {
        guard !inputs.isEmpty else {
            throw FactoryError.invalidInput("There are no reports to merge.", hint: "Give the --report-json files of the build job and of every shard.")
        }
        try check(inputs, expectedShards: expectedShards)
        let shardInputs = inputs.filter { $0.report.shard != nil }
        let others = distinctRuns(inputs.filter { $0.report.shard == nil })
            .sorted { ($0.report.startedAt, $0.source) < ($1.report.startedAt, $1.source) }
        // 0 when the run was not split (no shard report, no expected count): nothing can be missing.
        let count = expectedShards ?? shardInputs.first?.report.shard?.count ?? 0

        var own: [Diagnostic] = []
        var parts = others.map { part($0, superseded: []) }
        var used = others
        for index in stride(from: 1, through: count, by: 1) {
            let candidates = distinctRuns(shardInputs.filter { $0.report.shard?.index == index })
                .sorted { ($0.report.finishedAt, $0.report.runId) < ($1.report.finishedAt, $1.report.runId) }
            let name = "shard \(index) of \(count)"
            guard let newest = candidates.last else {
                parts.append(RunReport.MergedPart(shard: index, shardCount: count, result: .missing, runId: nil, source: nil, actions: 0, failed: 0))
                own.append(.error("\(name) is missing: none of the \(inputs.count) report\(inputs.count == 1 ? "" : "s") given is of it.",
                                  hint: "Its job did not finish, or its report was not published or downloaded: look at shard \(index)'s job, run it again, then merge again."))
                continue
            }
            let older = Array(candidates.dropLast())
            if !older.isEmpty {
                own.append(.warning("\(name) has \(candidates.count) reports: the newest, \(newest.source) (run \(newest.report.runId), finished at \(RecordTimestamp.format(newest.report.finishedAt))), "
                                    + "is its outcome; \(list(older.map(\.source))) \(older.count == 1 ? "is" : "are") ignored.",
                                    hint: "A retried job leaves its earlier report; the newest run planned again from the cloud and saw what the earlier one left."))
            }
            parts.append(part(newest, superseded: older))
            used.append(newest)
        }

        var diagnostics: [Diagnostic] = []
        var seen = Set<Diagnostic>()
        for d in own + used.flatMap(\.report.diagnostics) where seen.insert(d).inserted { diagnostics.append(d) }
        let actions = used.flatMap(\.report.actions)

        var merged = RunReport(summary: RunSummary(runID: runID, commit: used.lazy.compactMap(\.report.commit).first, results: [], diagnostics: []),
                               startedAt: used.map(\.report.startedAt).min() ?? inputs[0].report.startedAt,
                               finishedAt: used.map(\.report.finishedAt).max() ?? inputs[0].report.finishedAt)
        merged.actions = actions
        merged.diagnostics = diagnostics
        merged.backend = backend(used.compactMap(\.report.backend))
        merged.shard = nil
        merged.mergedFrom = parts
        let missing = parts.contains { $0.result == .missing }
        merged.result = missing ? .failed : RunReport.classify(actions: actions, diagnostics: diagnostics)
        return merged
    }

    /// Every reason the reports cannot be one run's, all at once.
    static func check(_ inputs: [Input], expectedShards: Int?) throws {
        var problems: [Diagnostic] = []
        if let expectedShards, expectedShards < 1 {
            problems.append(.error("\(expectedShards) shards cannot be expected.", hint: "Give the number of shards the run was split into, 1 or more."))
        }
        for input in inputs {
            guard let shard = input.report.shard, shard.count < 1 || shard.index < 1 || shard.index > shard.count else { continue }
            problems.append(.error("\(input.source) says it is shard \(shard.index) of \(shard.count), which cannot be.",
                                   hint: "Give the reports written by `run --shard I/N`, unedited."))
        }
        let byCount = Dictionary(grouping: inputs.filter { $0.report.shard != nil }) { $0.report.shard?.count ?? 0 }
        if let expectedShards {
            for (count, group) in byCount.sorted(by: { $0.key < $1.key }) where count != expectedShards {
                problems.append(.error("\(list(group.map(\.source))) \(group.count == 1 ? "is a shard" : "are shards") of a split in \(count), not in the \(expectedShards) expected.",
                                       hint: "Give the reports of one pipeline run, whose shards were split in \(expectedShards); clear the reports folder between runs."))
            }
        } else if byCount.count > 1 {
            let splits = byCount.sorted { $0.key < $1.key }
                .map { "\(list($0.value.map(\.source))) \($0.value.count == 1 ? "is a shard" : "are shards") of \($0.key)" }
            problems.append(.error("The shard reports come from splits of different sizes: \(splits.joined(separator: "; ")).",
                                   hint: "Give the reports of one pipeline run only; clear the reports folder between runs."))
        }
        let byCommit = Dictionary(grouping: inputs.filter { $0.report.commit != nil }) { $0.report.commit ?? "" }
        if byCommit.count > 1 {
            let commits = byCommit.sorted { $0.key < $1.key }.map { "\(list($0.value.map(\.source))) at \($0.key.prefix(12))" }
            problems.append(.error("The reports are of different commits: \(commits.joined(separator: "; ")).",
                                   hint: "Merge the reports of one pipeline run, whose jobs all checked out one commit; clear the reports folder between runs."))
        }
        if !problems.isEmpty { throw FactoryError(.invalidInput, problems) }
    }

    /// One input per run id, the first given: the same report downloaded twice counts once.
    static func distinctRuns(_ inputs: [Input]) -> [Input] {
        var seen = Set<String>()
        return inputs.filter { seen.insert($0.report.runId).inserted }
    }

    static func part(_ input: Input, superseded: [Input]) -> RunReport.MergedPart {
        let result: RunReport.MergedPart.Outcome
        switch input.report.result {
        case .succeeded: result = .succeeded
        case .partiallySucceeded: result = .partiallySucceeded
        case .failed: result = .failed
        }
        return RunReport.MergedPart(shard: input.report.shard?.index, shardCount: input.report.shard?.count, result: result,
                                    runId: input.report.runId, source: input.source, actions: input.report.actions.count,
                                    failed: input.report.failedActions.count, superseded: superseded.isEmpty ? nil : superseded.map(\.source))
    }

    /// Request counts summed; the kind and correlation id kept when every report agrees.
    static func backend(_ all: [RunReport.Backend]) -> RunReport.Backend? {
        guard let first = all.first else { return nil }
        let kinds = Set(all.map(\.kind))
        let correlations = Set(all.map(\.correlationId))
        return RunReport.Backend(kind: kinds.count == 1 ? first.kind : kinds.sorted().joined(separator: "+"),
                                 correlationId: correlations.count == 1 ? first.correlationId : nil,
                                 armReads: all.reduce(0) { $0 + $1.armReads }, armWrites: all.reduce(0) { $0 + $1.armWrites },
                                 storageReads: all.reduce(0) { $0 + $1.storageReads }, storageWrites: all.reduce(0) { $0 + $1.storageWrites },
                                 retries: all.reduce(0) { $0 + $1.retries }, throttled: all.reduce(0) { $0 + $1.throttled })
    }

    /// "a, b and c", or the first three and how many more.
    static func list(_ sources: [String]) -> String {
        let shown = sources.prefix(3)
        if sources.count > 3 { return shown.joined(separator: ", ") + " and \(sources.count - 3) more" }
        if shown.count <= 1 { return shown.first ?? "" }
        return shown.dropLast().joined(separator: ", ") + " and " + (shown.last ?? "")
    }
}

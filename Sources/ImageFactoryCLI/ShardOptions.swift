import ArgumentParser
import FactoryEngine
import FactoryModel
import FactoryReports
import Foundation

/// Which part of the factory a command works on: everything (the default), the factory's own
/// work (`--factory-only`, the build job of a sharded pipeline), or one shard's targets (`--shard`).
struct ShardOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Work on one shard of the factory's targets: I/N (1-based, e.g. 2/4), or auto (Azure Pipelines' SYSTEM_JOBPOSITIONINPHASE and SYSTEM_TOTALJOBSINPHASE, or Kubernetes' 0-based JOB_COMPLETION_INDEX with --shard-count). A shard distributes, cleans up and retires in its own labs and galleries only; the build job runs with --factory-only.",
        valueName: "I/N|auto"))
    var shard: String?

    @Option(name: .long, help: ArgumentHelp("With --shard auto: how many shards (a Kubernetes indexed Job's completions).", valueName: "n"))
    var shardCount: Int?

    @Flag(name: .long, help: "Only the factory's own work: build, snap, and the cleanup and retirement in the factory lab and its storage (the build job of a sharded pipeline; no target lab or gallery is touched).")
    var factoryOnly: Bool = false

    func validate() throws {
        if shard != nil && factoryOnly {
            throw ValidationError("--shard and --factory-only split the work two ways: the build job runs --factory-only, each shard job --shard I/N.")
        }
        if shardCount != nil && shard == nil {
            throw ValidationError("--shard-count goes with --shard auto (Kubernetes' JOB_COMPLETION_INDEX does not say how many shards there are).")
        }
        _ = try selection()
    }

    /// The shard this run is, `--shard auto` read from the environment; nil without `--shard`.
    func selection(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ShardSelection? {
        guard let shard else { return nil }
        do {
            return try ShardSelection.resolve(shard, count: shardCount, environment: environment)
        } catch let error as ShardSelectionError {
            throw ValidationError(error.description)
        }
    }

    /// Checks the shard against the stages and labs a command asks for: build and snap work in the
    /// factory lab and never run in a shard; a shard's labs come from the assignment, not `--lab`.
    func check(stages: Set<Stage>, explicitStages: Bool, labs: [String]) throws {
        guard shard != nil else { return }
        let factoryStages = stages.intersection([.build, .snap]).sorted()
        if explicitStages, !factoryStages.isEmpty {
            let one = factoryStages.count == 1
            throw ValidationError("\(factoryStages.map(\.rawValue).joined(separator: " and ")) \(one ? "works" : "work") in the factory lab and \(one ? "runs" : "run") once, in the build job (`imagefactory run --factory-only`), never in a shard: a shard runs distribute, cleanup and retire.")
        }
        if !labs.isEmpty {
            throw ValidationError("--lab and --shard both choose labs: a shard's labs come from the assignment (`imagefactory plan --shards N` shows it).")
        }
    }

    /// The scope of a run on `configuration`: the shard's targets come from the assignment, a pure
    /// function of the configuration and N, so every job of a run computes the same.
    func scope(_ configuration: FactoryConfiguration) throws -> RunScope {
        if factoryOnly { return .factory }
        guard let selection = try selection() else { return .whole }
        return .shard(ShardAssignment(configuration: configuration, count: selection.count).scope(selection))
    }
}

extension RunScope {
    /// The shard block of a run's reports.
    var reportShard: RunReport.Shard? {
        shard.map { RunReport.Shard(index: $0.index, count: $0.count, subscriptions: $0.subscriptions, targets: $0.labels) }
    }

    /// How the console names the part of the factory a run works on (nil for the whole factory).
    var consoleLabel: String? {
        switch self {
        case .whole: nil
        case .factory: "the factory's own work only: build, snap, the factory lab's cleanup and retirement"
        case .shard(let shard): shard.summary
        }
    }
}

/// `plan --shards N`: which targets each shard owns, its jobs and its share of the work, from the
/// configuration alone.
enum ShardTableRenderer {
    static func print(_ assignment: ShardAssignment, to out: (String) -> Void = Console.out) {
        let subscriptions = Set(assignment.shards.flatMap(\.subscriptions)).count
        let targets = assignment.shards.reduce(0) { $0 + $1.targets.count }
        let fair = Double(assignment.totalJobs) / Double(assignment.count)
        out("\(targets) target\(targets == 1 ? "" : "s") in \(subscriptions) subscription\(subscriptions == 1 ? "" : "s") over \(assignment.count) shard\(assignment.count == 1 ? "" : "s"): \(assignment.totalJobs) jobs estimated, a fair share is \(String(format: "%.1f", fair)).")
        let rows = assignment.shards.map { shard -> [String] in
            let labs = shard.targets.filter { $0.kind == .lab }.map(\.name)
            let galleries = shard.targets.filter { $0.kind == .gallery }.map(\.label)
            return ["\(shard.index)/\(assignment.count)", "\(shard.jobs)", String(format: "%.1f%%", assignment.share(of: shard) * 100),
                    shard.subscriptions.isEmpty ? "-" : shard.subscriptions.joined(separator: ", "),
                    (labs + galleries).isEmpty ? "(nothing)" : (labs + galleries).joined(separator: ", ")]
        }
        let header = ["shard", "jobs", "share", "subscriptions", "labs / galleries"]
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                column == cells.count - 1 ? cell
                    : (column == 1 || column == 2 ? String(repeating: " ", count: widths[column] - cell.count) + cell
                                                  : cell + String(repeating: " ", count: widths[column] - cell.count))
            }.joined(separator: "  ")
        }
        out(line(header))
        for row in rows { out(line(row)) }
        if !assignment.splitSubscriptions.isEmpty {
            out("Split across shards (each alone is over a fair share): \(assignment.splitSubscriptions.joined(separator: ", ")).")
        }
    }

    struct JSONShard: Encodable {
        var index: Int
        var jobs: Int
        var share: Double
        var subscriptions: [String]
        var labs: [String]
        var galleries: [String]
        /// As the run report's shard block names them: lab names, then `gallery NAME`.
        var targets: [String]
    }

    struct JSONAssignment: Encodable {
        var count: Int
        var totalJobs: Int
        var splitSubscriptions: [String]
        var shards: [JSONShard]
    }

    static func json(_ assignment: ShardAssignment) throws -> String {
        let shards = assignment.shards.map { shard in
            JSONShard(index: shard.index, jobs: shard.jobs, share: (assignment.share(of: shard) * 1000).rounded() / 1000,
                      subscriptions: shard.subscriptions, labs: shard.targets.filter { $0.kind == .lab }.map(\.name),
                      galleries: shard.targets.filter { $0.kind == .gallery }.map(\.name),
                      targets: ShardScope(index: shard.index, count: assignment.count, targets: shard.targets).labels)
        }
        return try JSONOutput.encode(JSONAssignment(count: assignment.count, totalJobs: assignment.totalJobs,
                                                    splitSubscriptions: assignment.splitSubscriptions, shards: shards))
    }
}

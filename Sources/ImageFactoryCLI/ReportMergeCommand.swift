import ArgumentParser
import FactoryModel
import FactoryReports
import Foundation

/// `imagefactory report`: the image catalogue (the default, so `report --html FILE` works as it always
/// did) and `report merge`. A group with a default subcommand rather than a parent with a run of its own:
/// ArgumentParser parses and validates a parent's options for its subcommands too, so the catalogue's
/// required `--html` and its refusal of `--json` would otherwise apply to `report merge`.
struct ReportGroupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write the golden image catalogue (`report --html FILE`), or merge the reports of a sharded run (`report merge`).",
        subcommands: [ReportCommand.self, ReportMergeCommand.self],
        defaultSubcommand: ReportCommand.self)
}

/// `imagefactory report merge REPORT…`: the one result of a factory split across parallel jobs, from
/// the build job's report and each shard's, with the exit code a single run would have.
struct ReportMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge the JSON reports of a sharded run (the build job's and every shard's) into one result; name each shard that failed or is missing.",
        discussion: """
            Give every --report-json file of one pipeline run: the build job's (no shard block) and one per \
            shard. A shard with no report is missing and fails the whole; of two reports of one shard (a \
            retried job), the newest is its outcome. Reports of another commit or of a split in another \
            number of shards are refused. The merged result follows the rule of a single run.

            Exit codes: 0 the merged run succeeded; 1 an action failed or a shard is missing (as for `run`); \
            2 a file is unreadable or no run report, or the reports are not of one run (nothing written); \
            64 usage error.
            """)

    @Argument(help: ArgumentHelp("The --report-json files of the build job and of every shard.", valueName: "report"))
    var reports: [String]

    @Option(name: .long, help: ArgumentHelp("How many shards the run was split into; every one without a report is missing (default: the count the shard reports give).", valueName: "n"))
    var shards: Int?

    @Option(name: .customLong("report-json"), help: ArgumentHelp("Write the merged JSON report here.", valueName: "file"))
    var reportJSON: String?

    @Option(name: .long, help: ArgumentHelp("Write a JUnit XML report (one test case per action, one per missing shard) here.", valueName: "file"))
    var junit: String?

    @Option(name: .customLong("summary-md"), help: ArgumentHelp("Write the Markdown summary here (default: $GITHUB_STEP_SUMMARY when set).", valueName: "file"))
    var summaryMarkdown: String?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if reports.isEmpty { throw ValidationError("Give the JSON reports to merge, e.g. `imagefactory report merge reports/*/report.json`.") }
        if let shards, shards < 1 { throw ValidationError("--shards \(shards): give the number of shards the run was split into, 1 or more.") }
    }

    func run() throws {
        let code = execute()
        if code != FactoryExitCode.success.rawValue { throw ExitCode(code) }
    }

    /// The whole command, with its run id, environment and output injectable so tests run it in-process.
    /// Returns the exit code.
    func execute(runID: String = RunID.make(), environment: [String: String] = ProcessInfo.processInfo.environment,
                 out: (String) -> Void = Console.out, err: (String) -> Void = Console.err) -> Int32 {
        let ci = output.ci ?? CIMode.detect(environment)
        // With --json, standard output carries the merged report only.
        let people = output.json ? err : out
        do {
            let merged = try ReportMerge.merge(try Self.read(reports), expectedShards: shards, runID: runID)
            try write(merged, environment: environment)
            Self.print(merged, to: people)
            for line in DiagnosticRenderer.annotations(Self.jobProblems(merged), ci: ci) { people(line) }
            if ci == .azureDevOps { people(Self.taskResult(merged)) }
            if output.json { out(String(decoding: try merged.encoded(), as: UTF8.self)) }
            return merged.result == .succeeded ? FactoryExitCode.success.rawValue : FactoryExitCode.workFailed.rawValue
        } catch let error as FactoryError {
            DiagnosticRenderer.printText(error.diagnostics, to: err)
            for line in DiagnosticRenderer.annotations(error.diagnostics, ci: ci) { people(line) }
            return error.exitCode.rawValue
        } catch {
            err("error: \(error.localizedDescription)")
            return FactoryExitCode.workFailed.rawValue
        }
    }

    /// Reads every file, collecting every problem: a missing file, a folder, an unreadable file, no run report.
    static func read(_ paths: [String]) throws -> [ReportMerge.Input] {
        var inputs: [ReportMerge.Input] = []
        var problems: [Diagnostic] = []
        let give = "Give the --report-json files of the build job and of every shard"
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                problems.append(.error("There is no such report.", file: path,
                                       hint: "\(give); check that the step downloading the jobs' artifacts put them there (a pattern that matches nothing is passed as it is)."))
                continue
            }
            if isDirectory.boolValue {
                problems.append(.error("This is a folder, not a report.", file: path, hint: "Give the report files in it, e.g. \(path)/*/report.json."))
                continue
            }
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                problems.append(.error("Cannot read the report: \(error.localizedDescription)", file: path, hint: "\(give), readable by this user."))
                continue
            }
            do {
                inputs.append(ReportMerge.Input(source: path, report: try RunReport.decode(data)))
            } catch let error as FactoryError {
                problems += error.diagnostics.map { d in
                    var d = d
                    d.file = path
                    return d
                }
            }
        }
        if !problems.isEmpty { throw FactoryError(.invalidInput, problems) }
        return inputs
    }

    /// The merged JSON, JUnit and Markdown. The Markdown is appended to $GITHUB_STEP_SUMMARY when that
    /// is where it goes, as GitHub documents, and written afresh to a file given with --summary-md.
    private func write(_ report: RunReport, environment: [String: String]) throws {
        if let reportJSON { try Self.write(try report.encoded(), to: reportJSON) }
        if let junit { try Self.write(Data(JUnitRenderer.render(report).utf8), to: junit) }
        let markdown = MarkdownRenderer.render(report)
        if let summaryMarkdown {
            try Self.write(Data(markdown.utf8), to: summaryMarkdown)
        } else if let path = environment["GITHUB_STEP_SUMMARY"], !path.isEmpty {
            if let handle = FileHandle(forWritingAtPath: path) {
                do {
                    _ = try handle.seekToEnd()
                    try handle.write(contentsOf: Data((markdown + "\n").utf8))
                    try handle.close()
                } catch {
                    throw FactoryError.invalidInput("Cannot write \(path): \(error.localizedDescription)", file: path)
                }
            } else {
                try Self.write(Data(markdown.utf8), to: path)
            }
        }
    }

    private static func write(_ data: Data, to path: String) throws {
        do {
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
        } catch {
            throw FactoryError.invalidInput("Cannot write \(path): \(error.localizedDescription)", file: path,
                                            hint: "Choose a path in a folder you can write to.")
        }
    }

    /// People's view: one line per job, the failed actions, the diagnostics, and the one result.
    static func print(_ report: RunReport, to out: (String) -> Void) {
        let parts = report.mergedFrom ?? []
        let given = parts.reduce(0) { $0 + ($1.result == .missing ? 0 : 1 + ($1.superseded?.count ?? 0)) }
        out("Merged \(given) report\(given == 1 ? "" : "s") into run \(report.runId) at commit \(report.commit.map { String($0.prefix(12)) } ?? "unknown"):")
        for part in parts {
            switch part.result {
            case .missing:
                out("  \(part.label) is missing")
            case .succeeded, .partiallySucceeded, .failed:
                let result = part.result == .partiallySucceeded ? "partially succeeded" : part.result.rawValue
                out("  \(part.label): \(result), \(part.actions) action\(part.actions == 1 ? "" : "s"), \(part.failed) failed (\(part.source ?? "-"))")
            }
        }
        for action in report.failedActions {
            out("  FAILED \(action.kind.rawValue) \(action.id)\(action.target.map { " in \($0)" } ?? ""): \(action.error ?? "")")
        }
        if !report.diagnostics.isEmpty { DiagnosticRenderer.printText(report.diagnostics, to: out) }
        let warnings = report.diagnostics.warnings.count
        let withWarnings = warnings == 0 ? "" : ", \(warnings) warning\(warnings == 1 ? "" : "s")"
        switch report.result {
        case .succeeded: out("Result: succeeded\(withWarnings)")
        case .partiallySucceeded: out("Result: partially succeeded (exit 1)\(withWarnings)")
        case .failed: out("Result: failed (exit 1)\(withWarnings)")
        }
    }

    /// What CI annotates on the merge job: each shard that is missing, failed or partly failed (the
    /// shards' own jobs already annotated their failed actions).
    static func jobProblems(_ report: RunReport) -> [Diagnostic] {
        (report.mergedFrom ?? []).compactMap { part in
            switch part.result {
            case .succeeded: return nil
            case .missing: return .error("\(part.label) is missing: no report of it was merged.")
            case .failed: return .error("\(part.label) failed: \(part.failed) of \(part.actions) actions failed (run \(part.runId ?? "-")).")
            case .partiallySucceeded: return .warning("\(part.label) partially succeeded: \(part.failed) of \(part.actions) actions failed (run \(part.runId ?? "-")).")
            }
        }
    }

    /// Azure DevOps' task result, by the same rule as `run`'s.
    static func taskResult(_ report: RunReport) -> String {
        switch report.result {
        case .succeeded: return "##vso[task.complete result=Succeeded;]ImageFactory merged run \(report.runId) succeeded"
        case .partiallySucceeded:
            return "##vso[task.complete result=SucceededWithIssues;]ImageFactory merged run \(report.runId): \(report.failedActions.count) of \(report.actions.count) actions failed"
        case .failed: return "##vso[task.complete result=Failed;]ImageFactory merged run \(report.runId) failed"
        }
    }
}

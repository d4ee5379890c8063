import ArgumentParser
import FactoryEngine
import FactoryReports
import FactoryModel
import Foundation
import Logging

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// How a run talks to people and CI, and which reports it writes.
struct ReportOptions: ParsableArguments {
    @Option(name: .customLong("report-json"), help: ArgumentHelp("Write the versioned JSON report of the run here.", valueName: "file"))
    var reportJSON: String?

    @Option(name: .long, help: ArgumentHelp("Write a JUnit XML report (one test case per action) here.", valueName: "file"))
    var junit: String?

    @Option(name: .customLong("summary-md"), help: ArgumentHelp("Write a Markdown summary here (default: $GITHUB_STEP_SUMMARY when set).", valueName: "file"))
    var summaryMarkdown: String?

    @Flag(name: .shortAndLong, help: "Print only failures and the summary.")
    var quiet: Bool = false

    @Flag(name: .shortAndLong, help: "Print every action as it starts and ends, with its reason.")
    var verbose: Bool = false

    @Option(name: .long, help: ArgumentHelp("text (default) or json: structured log lines through swift-log.", valueName: "format"))
    var logFormat: LogFormat = .text

    func validate() throws {
        if quiet && verbose { throw ValidationError("--quiet and --verbose cannot be used together.") }
    }
}

/// Writes run events where people look: a live progress line on a terminal, one timestamped
/// line per event otherwise, CI logging commands in Azure DevOps and GitHub Actions, or JSON logs.
final class RunConsole: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`; this is the one lock-box of the CLI.
    private let lock = NSLock()
    let ci: CIMode
    let options: ReportOptions
    let interactive: Bool
    let logger: Logger?
    private var totals: [Stage: Int] = [:]
    private var done: [Stage: Int] = [:]
    private var inFlight = 0
    private var currentStage: Stage?
    /// The stage whose `::group::` is open: GitHub's groups do not nest, and stages overlap, so a
    /// stage that starts while another's group is open gets a plain line instead.
    private var openGroup: Stage?
    private let started = Date()
    private var finishedDurations: [Double] = []
    private var lastDraw = Date.distantPast
    private var drewStatus = false

    /// Where in the configuration a failed action comes from, for CI annotations.
    private var source: ActionSourceLocator?
    let runID: String
    /// `--json`: standard output carries the run report only; people's lines go to standard error.
    let json: Bool

    init(ci: CIMode, options: ReportOptions, runID: String, json: Bool = false,
         environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.ci = ci
        self.options = options
        self.runID = runID
        self.json = json
        interactive = !json && ci == .none && options.logFormat == .text && isatty(STDOUT_FILENO) == 1 && environment["TERM"] != "dumb"
        if options.logFormat == .json {
            var logger = Logger(label: "imagefactory", factory: { JSONLogHandler(label: $0) })
            logger.logLevel = options.verbose ? .debug : (options.quiet ? .warning : .info)
            self.logger = logger
        } else {
            logger = nil
        }
    }

    func locateFailures(with source: ActionSourceLocator) {
        lock.lock()
        defer { lock.unlock() }
        self.source = source
    }

    private func out(_ text: String) { if json { Console.err(text) } else { Console.out(text) } }

    private func line(_ text: String) {
        out("\(RecordTimestamp.format(Date()).prefix(23)) \(text)")
    }

    private func start(_ plan: Plan, revised: Bool) {
        for stage in Stage.allCases { totals[stage] = plan.actions(in: stage).count }
        if revised, !options.quiet, logger == nil {
            line("The cloud changed since planning: the plan was made again under the lock.")
        }
        let scope = (plan.scope ?? .whole).consoleLabel
        let text = "Run \(runID)\(scope.map { " (\($0))" } ?? ""): \(plan.actions.count) action\(plan.actions.count == 1 ? "" : "s") at commit \(plan.commit?.prefix(12) ?? "worktree")"
            + (plan.actions.isEmpty ? ": nothing to do, every lab has the newest images." : "")
        if let logger {
            var metadata: Logger.Metadata = ["run": "\(runID)", "actions": "\(plan.actions.count)", "commit": "\(plan.commit ?? "worktree")"]
            if let shard = plan.scope?.shard { metadata["shard"] = "\(shard.index)/\(shard.count)" }
            logger.info("run started", metadata: metadata)
            return
        }
        if !options.quiet { line(text) }
    }

    func event(_ event: FactoryEvent) {
        lock.lock()
        defer { lock.unlock() }
        if let logger {
            log(event, logger)
            return
        }
        switch event {
        case .secret(let value):
            if ci == .azureDevOps { out("##vso[task.setsecret]\(value)") }
            if ci == .github { out("::add-mask::\(value)") }
        case .stageStarted(let stage, let count):
            currentStage = stage
            clearStatus()
            switch ci {
            case .azureDevOps: out("##[section]Stage \(stage.rawValue): \(count) action\(count == 1 ? "" : "s")")
            case .github:
                let text = "Stage \(stage.rawValue) (\(count) action\(count == 1 ? "" : "s"))"
                if openGroup == nil {
                    openGroup = stage
                    out("::group::" + text)
                } else {
                    out(text)
                }
            case .none: if !options.quiet { line("== \(stage.rawValue): \(count) action\(count == 1 ? "" : "s")") }
            }
        case .actionStarted(let action):
            inFlight += 1
            if interactive { drawStatus() } else if options.verbose { line("   start \(action.id): \(action.reason)") }
        case .actionFinished(let result):
            if result.outcome != .skipped || result.message?.hasPrefix("skipped") == false { inFlight = max(0, inFlight - 1) }
            done[result.action.stage, default: 0] += 1
            finishedDurations.append(result.duration)
            let detail = result.message.map { ": \($0)" } ?? ""
            if result.outcome == .failed {
                clearStatus()
                switch ci {
                case .none: break
                default:
                    let location = source?.locate(result.action, message: result.message)
                    let diagnostic = Diagnostic.error("\(result.action.id) failed\(detail)", file: location?.file, line: location?.line)
                    for line in DiagnosticRenderer.annotations([diagnostic], ci: ci, title: result.action.kind.rawValue) { out(line) }
                }
                line("   failed \(result.action.id) (\(String(format: "%.1f", result.duration))s)\(detail)")
            } else if interactive {
                drawStatus()
            } else if !options.quiet {
                line("   \(result.outcome.rawValue) \(result.action.id) (\(String(format: "%.1f", result.duration))s)\(result.outcome == .skipped ? detail : "")")
            }
            if ci == .azureDevOps {
                let total = totals.values.reduce(0, +)
                let finished = done.values.reduce(0, +)
                if total > 0 { out("##vso[task.setprogress value=\(finished * 100 / total);]ImageFactory") }
            }
        case .stageFinished(let stage, let ok, let failed, let skipped):
            clearStatus()
            if !options.quiet || failed > 0 { line("== \(stage.rawValue) done: \(ok) succeeded, \(failed) failed, \(skipped) skipped") }
            if ci == .github, openGroup == stage {
                out("::endgroup::")
                openGroup = nil
            }
        case .note(let text):
            if !options.quiet { line(text) }
        case .runStarted(let plan, let revised):
            start(plan, revised: revised)
        }
    }

    private func log(_ event: FactoryEvent, _ logger: Logger) {
        switch event {
        case .secret: break
        case .stageStarted(let stage, let count): logger.info("stage started", metadata: ["stage": "\(stage.rawValue)", "actions": "\(count)"])
        case .actionStarted(let a): logger.debug("action started", metadata: ["action": "\(a.id)", "stage": "\(a.stage.rawValue)", "reason": "\(a.reason)"])
        case .actionFinished(let r):
            var metadata: Logger.Metadata = ["action": "\(r.action.id)", "stage": "\(r.action.stage.rawValue)", "result": "\(r.outcome.rawValue)",
                                             "durationSeconds": "\(String(format: "%.3f", r.duration))"]
            if let lab = r.action.lab { metadata["lab"] = "\(lab)" }
            if let message = r.message { metadata["detail"] = "\(message)" }
            if r.outcome == .failed { logger.error("action failed", metadata: metadata) } else { logger.info("action finished", metadata: metadata) }
        case .stageFinished(let stage, let ok, let failed, let skipped):
            logger.info("stage finished", metadata: ["stage": "\(stage.rawValue)", "succeeded": "\(ok)", "failed": "\(failed)", "skipped": "\(skipped)"])
        case .note(let text): logger.info("\(text)")
        case .runStarted(let plan, let revised): start(plan, revised: revised)
        }
    }

    /// The live line: per-stage done/total, jobs in flight, elapsed and estimated time left.
    private func drawStatus() {
        guard interactive, Date().timeIntervalSince(lastDraw) > 0.1 else { return }
        lastDraw = Date()
        let stages = Stage.allCases.compactMap { s -> String? in
            guard let total = totals[s], total > 0 else { return nil }
            return "\(s.rawValue) \(done[s] ?? 0)/\(total)"
        }.joined(separator: "  ")
        let elapsed = Date().timeIntervalSince(started)
        let total = totals.values.reduce(0, +)
        let finished = done.values.reduce(0, +)
        var eta = ""
        if finished > 0 && finished < total {
            let rate = elapsed / Double(finished)
            eta = String(format: "  ~%.0fs left", rate * Double(total - finished))
        }
        FileHandle.standardOutput.write(Data("\r\u{1B}[2K\(stages)  |  \(inFlight) in flight  |  \(String(format: "%.0fs", elapsed))\(eta)".utf8))
        drewStatus = true
    }

    private func clearStatus() {
        guard drewStatus else { return }
        FileHandle.standardOutput.write(Data("\r\u{1B}[2K".utf8))
        drewStatus = false
    }

    /// Writes the reports, the summary, and the CI result line.
    func finish(_ report: RunReport, summary: RunSummary, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        lock.lock()
        clearStatus()
        lock.unlock()
        if let path = options.reportJSON { try write(try report.encoded(), to: path) }
        if let path = options.junit { try write(Data(JUnitRenderer.render(report).utf8), to: path) }
        let markdownPath = options.summaryMarkdown ?? environment["GITHUB_STEP_SUMMARY"].flatMap { $0.isEmpty ? nil : $0 }
        if let path = markdownPath {
            let markdown = MarkdownRenderer.render(report)
            if options.summaryMarkdown == nil, let handle = FileHandle(forWritingAtPath: path) {
                // $GITHUB_STEP_SUMMARY is appended to, as GitHub documents.
                _ = try? handle.seekToEnd()
                try handle.write(contentsOf: Data((markdown + "\n").utf8))
                try handle.close()
            } else {
                try write(Data(markdown.utf8), to: path)
            }
        }
        if let logger {
            logger.log(level: report.result == .succeeded ? .info : .error, "run finished", metadata: [
                "run": "\(report.runId)", "result": "\(report.result.rawValue)", "failed": "\(report.failedActions.count)",
                "actions": "\(report.actions.count)"])
        } else {
            SummaryRenderer.print(summary, result: report.result, shard: report.shard, to: out)
        }
        if json { Console.out(String(decoding: try report.encoded(), as: UTF8.self)) }
        let issues = summary.diagnostics
        DiagnosticRenderer.printAnnotations(issues, ci: ci)
        if ci == .azureDevOps {
            switch report.result {
            case .succeeded: out("##vso[task.complete result=Succeeded;]ImageFactory run \(report.runId) succeeded")
            case .partiallySucceeded: out("##vso[task.complete result=SucceededWithIssues;]ImageFactory run \(report.runId): \(report.failedActions.count) of \(report.actions.count) actions failed")
            case .failed: out("##vso[task.complete result=Failed;]ImageFactory run \(report.runId) failed")
            }
        }
    }

    /// A run stopped before or while starting (invalid input, a busy factory, a stale plan, an
    /// unreachable backend): its reports are still written, with the error, so CI's test and
    /// summary publishing find them. Writing them must not hide the error, so failures here are ignored.
    func finishStopped(_ error: Error, runID: String, startedAt: Date, backend: RunReport.Backend? = nil, shard: RunReport.Shard? = nil) {
        let diagnostics: [Diagnostic]
        switch error {
        case let e as FactoryError: diagnostics = e.diagnostics
        case is CancellationError: diagnostics = [.error("The run was interrupted (Ctrl-C); run again to finish the work.")]
        default: diagnostics = [.error(error.localizedDescription)]
        }
        let summary = RunSummary(runID: runID, commit: nil, results: [], diagnostics: diagnostics)
        var report = RunReport(summary: summary, startedAt: startedAt, finishedAt: Date())
        report.backend = backend
        report.shard = shard
        if let path = options.reportJSON, let data = try? report.encoded() { try? write(data, to: path) }
        if let path = options.junit { try? write(Data(JUnitRenderer.render(report).utf8), to: path) }
        if let path = options.summaryMarkdown { try? write(Data(MarkdownRenderer.render(report).utf8), to: path) }
        if json, let data = try? report.encoded() { Console.out(String(decoding: data, as: UTF8.self)) }
    }

    private func write(_ data: Data, to path: String) throws {
        do {
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
        } catch {
            throw FactoryError(.workFailed, "Cannot write \(path): \(error.localizedDescription)")
        }
    }
}

/// swift-log handler writing one JSON object per line to standard output.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[key] = "\(value)" }
        // The event's own fields win over metadata of the same name.
        object["timestamp"] = RecordTimestamp.format(Date())
        object["level"] = event.level.rawValue
        object["message"] = "\(event.message)"
        object["logger"] = label
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) {
            Console.out(String(decoding: data, as: UTF8.self))
        }
    }
}

/// Finds where a failed action comes from in the configuration: the template of a build or
/// capture (at the failing artifact's line when the message names one), or the lab's entry in
/// Labs.json for a distribution or retirement, so CI annotations point at the file to fix.
struct ActionSourceLocator: Sendable {
    let configuration: FactoryConfiguration

    func locate(_ action: PlanAction, message: String?) -> (file: String, line: Int?)? {
        let folder = configuration.configDirectory.isEmpty ? "" : configuration.configDirectory + "/"
        switch action.stage {
        case .build, .snap:
            guard let path = action.imagePath, let template = configuration.template(at: path) else { return nil }
            let file = folder + ConfigurationLoader.goldenImagesFolder + "/" + path
            let lines = LineIndex(String(decoding: template.templateJSON, as: UTF8.self))
            let failing = template.artifacts.first { message?.contains($0.name) == true }
            return (file, failing.flatMap { lines.locate($0.name)?.line } ?? lines.locate("virtualmachines")?.line)
        case .distribute, .retire, .cleanup:
            // By the lab's full identity: two subscriptions may each hold a lab of the same name.
            guard let labID = action.labID,
                  let lab = configuration.labs.first(where: { $0.identifies(labID) }) else { return nil }
            return (folder + ConfigurationLoader.labsFile, lab.line)
        }
    }
}

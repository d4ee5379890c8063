import ArgumentParser
import FactoryEngine
import FactoryReports
import FactoryModel
import Foundation
import LocalCloud

/// Flags shared by the commands that plan or run the factory.
struct RunOptions: ParsableArguments {
    @Flag(name: .long, help: "Rebuild every template, changed or not.")
    var force: Bool = false
}

/// Everything a factory command needs, resolved once: configuration, backend, runner.
struct FactoryContext {
    var configuration: FactoryConfiguration
    var runner: FactoryRunner
    var backend: any CloudBackend

    /// `writes`: whether the command may change the cloud. Commands documented as read-only pass
    /// false and get a backend that refuses every write.
    static func make(repository: RepositoryOptions, settings: SettingsOptions, backendOptions: BackendOptions, writes: Bool) async throws -> FactoryContext {
        let repositoryPath = try repository.repositoryPath()
        let snapshot = try repository.source().load()
        let configuration = ConfigurationLoader.load(snapshot, settingsLayers: settings.layers())
        guard configuration.isValid else {
            throw FactoryError(.invalidInput, configuration.diagnostics.filter { $0.severity == .error })
        }
        let opened = try await backendOptions.openBackend(repositoryPath: repositoryPath, configuration: configuration, writes: writes)
        for note in opened.notes { Console.err(note) }
        let backend = opened.backend
        let lockSeconds = Double(ProcessInfo.processInfo.environment["IMAGEFACTORY_LOCK_SECONDS"] ?? "") ?? 60
        return FactoryContext(configuration: configuration,
                              runner: FactoryRunner(backend: backend, configuration: configuration, lockSeconds: lockSeconds),
                              backend: backend)
    }
}

/// The options every factory command shares: where the configuration is, the factory's
/// settings, the backend and the output.
struct FactoryOptions: ParsableArguments {
    @OptionGroup var repository: RepositoryOptions
    @OptionGroup(title: "Factory settings") var settings: SettingsOptions
    @OptionGroup var backend: BackendOptions
    @OptionGroup var output: OutputOptions

    func context(writes: Bool) async throws -> FactoryContext {
        try await FactoryContext.make(repository: repository, settings: settings, backendOptions: backend, writes: writes)
    }
}

/// `imagefactory plan`: what a run would do, changing nothing.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Show what a run would do, from the configuration at the ref and the cloud's inventory; change nothing.")

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var runOptions: RunOptions

    @Option(name: .long, help: ArgumentHelp("Save the plan as JSON for `imagefactory apply`.", valueName: "file"))
    var out: String?

    func run() async throws {
        do {
            let context = try await factory.context(writes: false)
            let (plan, _) = try await context.runner.plan(force: runOptions.force)
            if let out { try plan.encoded().write(to: URL(fileURLWithPath: out)) }
            if factory.output.json { Console.out(String(decoding: try plan.encoded(), as: UTF8.self)) } else { PlanRenderer.print(plan) }
            DiagnosticRenderer.printAnnotations(plan.diagnostics, ci: factory.output.ciMode)
            // A plan with errors (a missing lab, too many deletions) would fail: say so to CI gates.
            if plan.diagnostics.hasErrors { throw ExitCode(FactoryExitCode.workFailed.rawValue) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}

/// `imagefactory run`: every stage in order (or `--stages`), or `--dry-run` to print the plan.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the factory: build, snap, distribute, cleanup, retire.")

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Output and reports") var reports: ReportOptions

    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("Stages to run (default: all): build snap distribute cleanup retire.", valueName: "stage"))
    var stages: [String] = []

    @Flag(name: .long, help: "Print the plan and change nothing.")
    var dryRun: Bool = false

    func validate() throws {
        for stage in stages.flatMap({ $0.split(separator: ",").map(String.init) }) where Stage(rawValue: stage) == nil {
            throw ValidationError("Unknown stage \"\(stage)\": use build, snap, distribute, cleanup or retire.")
        }
    }

    func run() async throws {
        let selected = Set(stages.flatMap { $0.split(separator: ",").compactMap { Stage(rawValue: String($0)) } })
        try await FactoryRun.execute(factory, reports: reports,
                                     force: runOptions.force, stages: selected.isEmpty ? Set(Stage.allCases) : selected, dryRun: dryRun, planFile: nil)
    }
}

/// `imagefactory build|snap|distribute|cleanup|retire`: one stage.
struct StageCommand<S: StageName>: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: S.stage.rawValue, abstract: "Run only the \(S.stage.rawValue) stage.")
    }

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Output and reports") var reports: ReportOptions

    @Flag(name: .long, help: "Print the plan and change nothing.")
    var dryRun: Bool = false

    func run() async throws {
        try await FactoryRun.execute(factory, reports: reports,
                                     force: runOptions.force, stages: [S.stage], dryRun: dryRun, planFile: nil)
    }
}

protocol StageName { static var stage: Stage { get } }
enum BuildStage: StageName { static let stage = Stage.build }
enum SnapStage: StageName { static let stage = Stage.snap }
enum DistributeStage: StageName { static let stage = Stage.distribute }
enum CleanupStage: StageName { static let stage = Stage.cleanup }
enum RetireStage: StageName { static let stage = Stage.retire }

/// `imagefactory apply FILE`: executes a saved plan, refusing a stale one.
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Execute a saved plan; refuse it if the commit or the cloud changed since.")

    @Argument(help: "The plan file written by `imagefactory plan --out`.")
    var planFile: String

    @OptionGroup var factory: FactoryOptions
    @OptionGroup(title: "Output and reports") var reports: ReportOptions

    func run() async throws {
        try await FactoryRun.execute(factory, reports: reports,
                                     force: false, stages: Set(Stage.allCases), dryRun: false, planFile: planFile)
    }
}

/// The shared body of `run`, the stage commands and `apply`.
enum FactoryRun {
    static func execute(_ factory: FactoryOptions, reports: ReportOptions, force: Bool, stages: Set<Stage>, dryRun: Bool,
                        planFile: String?) async throws {
        let ci = factory.output.ciMode
        let summary: RunSummary
        let console: RunConsole
        let startedAt = Date()
        do {
            let context = try await factory.context(writes: !dryRun)
            let plan: Plan
            if let planFile {
                let data: Data
                do { data = try Data(contentsOf: URL(fileURLWithPath: planFile)) } catch {
                    throw FactoryError.invalidInput("Cannot read the plan file \(planFile).", file: planFile)
                }
                do { plan = try Plan.decode(data) } catch let e as FactoryError { throw e } catch {
                    throw FactoryError.invalidInput("\(planFile) is not a valid plan: \(error)", file: planFile)
                }
            } else {
                plan = try await context.runner.plan(force: force).0
            }
            let selected = {
                var selected = plan
                selected.actions = plan.actions.filter { stages.contains($0.stage) }
                return selected
            }()
            if dryRun {
                if factory.output.json { Console.out(String(decoding: try selected.encoded(), as: UTF8.self)) } else { PlanRenderer.print(selected) }
                DiagnosticRenderer.printAnnotations(selected.diagnostics, ci: ci)
                // A plan with errors (a missing lab, too many deletions) would fail: say so to CI gates.
                if selected.diagnostics.hasErrors { throw ExitCode(FactoryExitCode.workFailed.rawValue) }
                return
            }
            let runID = RunID.make()
            let runConsole = RunConsole(ci: ci, options: reports, plan: selected, source: ActionSourceLocator(configuration: context.configuration))
            console = runConsole
            runConsole.start(runID: runID, plan: selected)
            summary = try await Interrupts.cancellable {
                try await context.runner.execute(selected, runID: runID, stages: stages, requireSamePlanBasis: planFile != nil,
                                                 events: { runConsole.event($0) })
            }
        } catch {
            throw ErrorMapper.report(error, ci: ci)
        }
        let report = RunReport(summary: summary, startedAt: startedAt, finishedAt: Date())
        do { try console.finish(report, summary: summary) } catch { throw ErrorMapper.report(error, ci: ci) }
        if !summary.succeeded { throw ExitCode(FactoryExitCode.workFailed.rawValue) }
    }
}

enum RunID {
    static func make() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: Date()) + "-" + String(UUID().uuidString.prefix(6)).lowercased()
    }
}

/// Ctrl-C cancels the run cleanly: every job sees the cancellation, and the exit code is 130.
enum Interrupts {
    static func cancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await body() }
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        defer { source.cancel() }
        do {
            return try await task.value
        } catch {
            if task.isCancelled {
                Console.err("Interrupted: the run was canceled; run again to finish the work.")
                throw ExitCode(FactoryExitCode.interrupted.rawValue)
            }
            throw error
        }
    }
}

/// `imagefactory images`: the factory's VHD records, or one lab's custom images.
struct ImagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images", abstract: "List the factory's VHD records, or one lab's custom images with --lab.")

    @OptionGroup var factory: FactoryOptions

    @Option(name: .long, help: ArgumentHelp("A lab name from Labs.json (or the factory lab).", valueName: "name"))
    var lab: String?

    func run() async throws {
        do {
            let context = try await factory.context(writes: false)
            let inventory = try await context.runner.inventory()
            if let lab {
                let images: [CustomImage]
                if lab.lowercased() == inventory.factory.id.name.lowercased() {
                    images = inventory.factoryImages
                } else if let found = inventory.labs.first(where: { $0.lab?.id.name.lowercased() == lab.lowercased() }) {
                    images = found.images
                } else {
                    throw FactoryError.invalidInput("Lab \(lab) is not the factory lab nor in Labs.json.", hint: "Use a LabName from Labs.json.")
                }
                if factory.output.json { Console.out(try JSONOutput.encode(images)) ; return }
                Console.out("Custom images in \(lab): \(images.count)")
                for i in images.sorted(by: { $0.createdAt > $1.createdAt }) {
                    Console.out("  \(i.id.name)  \(i.osType.rawValue)  \(i.provisioningState)  \(i.tags[FactoryTag.imagePath] ?? "(not the factory's)")  \(RecordTimestamp.format(i.createdAt))")
                }
                return
            }
            let records = inventory.records.sorted { ($0.imagePath, $0.timestamp) < ($1.imagePath, $1.timestamp) }
            if factory.output.json { Console.out(try JSONOutput.encode(records)); return }
            Console.out("VHD records in the factory storage: \(records.count)")
            for r in records {
                Console.out("  \(r.imageName)  \(r.imagePath)  \(r.osType.rawValue)  \((r.osState ?? .generalized).rawValue)  \(r.commit.map { String($0.prefix(12)) } ?? "-")  \(RecordTimestamp.format(r.timestamp))")
            }
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}

/// `imagefactory report --html FILE`: the golden image catalogue.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Write the golden image catalogue: one self-contained HTML page.")

    @OptionGroup var factory: FactoryOptions

    @Option(name: .long, help: ArgumentHelp("Where to write the HTML catalogue.", valueName: "file"))
    var html: String

    func run() async throws {
        do {
            let context = try await factory.context(writes: false)
            let inventory = try await context.runner.inventory()
            let page = CatalogRenderer.html(context.configuration, inventory: inventory, generatedAt: Date())
            let url = URL(fileURLWithPath: html)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(page.utf8).write(to: url)
            Console.out("Wrote the catalogue of \(context.configuration.templates.count) golden images to \(html)")
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}

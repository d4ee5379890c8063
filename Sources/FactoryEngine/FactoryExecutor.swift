import FactoryModel
import Foundation

public struct ExecutionOptions: Sendable {
    public var runID: String
    public var stages: Set<Stage>
    /// Run stage after stage (every action of a stage before any of the next), as runs did before
    /// stages overlapped; kept to compare the two.
    public var stageBarriers: Bool

    public init(runID: String, stages: Set<Stage> = Set(Stage.allCases), stageBarriers: Bool = false) {
        self.runID = runID
        self.stages = stages
        self.stageBarriers = stageBarriers
    }
}

/// Shared state of one execution: the records made by this run's captures, by capture action id.
actor ExecutionState {
    var captured: [String: VhdRecord] = [:]
    var published: [String: GalleryImageVersion] = [:]

    func addCapture(_ actionID: String, _ record: VhdRecord) { captured[actionID] = record }
    func capture(_ actionID: String) -> VhdRecord? { captured[actionID] }
    /// The gallery version a publish action saw last (its replication per region), for the reports.
    func addPublished(_ actionID: String, _ version: GalleryImageVersion) { published[actionID] = version }
}

/// Executes a plan, and nothing but the plan: every action carries what it needs. One
/// scheduler keeps at most `maxConcurrentJobs` actions in flight over the plan's dependencies;
/// one action's failure never stops the others; an action whose dependency did not succeed is
/// skipped.
public struct FactoryExecutor: Sendable {
    public var client: CloudClient
    public var options: ExecutionOptions
    public var events: @Sendable (FactoryEvent) -> Void

    public init(client: CloudClient, options: ExecutionOptions, events: @escaping @Sendable (FactoryEvent) -> Void = { _ in }) {
        self.client = client
        self.options = options
        self.events = events
    }

    var clock: any FactoryClock { client.clock }

    public func execute(_ plan: Plan) async throws -> RunSummary {
        let state = ExecutionState()
        var results: [ActionResult] = []
        var selected = plan.actions.filter { options.stages.contains($0.stage) }
        if plan.guardedDeletionCount > plan.settings.maxDeletions {
            let now = clock.now()
            for action in selected where action.deletesImage {
                results.append(ActionResult(action: action, outcome: .skipped, message: "not run: the plan exceeds --max-deletions", start: now, end: now))
            }
            selected.removeAll(where: \.deletesImage)
        }
        let handlers = ActionHandlers(client: client, runID: options.runID, timeoutSeconds: Double(plan.settings.timeoutMinutes) * 60,
                                      state: state, events: events)
        let scheduler = PlanScheduler(maxConcurrentJobs: plan.settings.maxConcurrentJobs, stageBarriers: options.stageBarriers)
        let events = self.events
        let clock = self.clock
        let runID = options.runID
        results += try await scheduler.run(
            selected,
            progress: { progress in
                switch progress {
                case .stageStarted(let stage, let count): events(.stageStarted(stage, actions: count))
                case .stageFinished(let stage, let s, let f, let k): events(.stageFinished(stage, succeeded: s, failed: f, skipped: k))
                }
            },
            skip: { action, dependency, ran in
                let now = clock.now()
                let result = ActionResult(action: action, outcome: .skipped,
                                          message: "skipped: \(dependency) \(ran ? "did not succeed" : "was not run")", start: now, end: now)
                events(.actionFinished(result))
                return result
            },
            perform: { action in
                let start = clock.now()
                events(.actionStarted(action))
                do {
                    try await OperationContext.$jobID.withValue(action.id) {
                        try await OperationContext.$runID.withValue(runID) {
                            try await handlers.perform(action)
                        }
                    }
                    let result = ActionResult(action: action, outcome: .succeeded, message: nil, start: start, end: clock.now(),
                                              published: await state.published[action.id])
                    events(.actionFinished(result))
                    return result
                } catch {
                    let message: String
                    switch error {
                    case let e as CloudError: message = "\(e.code): \(e.message)"
                    case is CancellationError: message = "canceled"
                    default: message = "\(error)"
                    }
                    let result = ActionResult(action: action, outcome: .failed, message: message, start: start, end: clock.now(),
                                              published: await state.published[action.id])
                    events(.actionFinished(result))
                    return result
                }
            })
        return RunSummary(runID: options.runID, commit: plan.commit, results: results, diagnostics: plan.diagnostics)
    }
}

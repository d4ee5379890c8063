import FactoryModel
import Foundation

/// What happened to one action.
public struct ActionResult: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable { case succeeded, failed, skipped }
    public var action: PlanAction
    public var outcome: Outcome
    public var message: String?
    public var start: Date
    public var end: Date
    /// For a gallery publish: the version it published (or last saw) and each region's replication.
    public var published: GalleryImageVersion?
    public var duration: Double { end.timeIntervalSince(start) }

    public init(action: PlanAction, outcome: Outcome, message: String?, start: Date, end: Date, published: GalleryImageVersion? = nil) {
        self.action = action
        self.outcome = outcome
        self.message = message
        self.start = start
        self.end = end
        self.published = published
    }
}

/// The outcome of a run: every action's result and the problems found while planning.
public struct RunSummary: Codable, Sendable {
    public var runID: String
    public var commit: String?
    public var results: [ActionResult]
    public var diagnostics: [Diagnostic]
    public init(runID: String, commit: String?, results: [ActionResult], diagnostics: [Diagnostic]) {
        self.runID = runID
        self.commit = commit
        self.results = results
        self.diagnostics = diagnostics
    }

    public var failed: [ActionResult] { results.filter { $0.outcome == .failed } }
    public var succeeded: Bool { failed.isEmpty && !diagnostics.hasErrors }
}

import FactoryModel
import Foundation

/// A run's events, for progress displays and logs (the library never prints).
public enum FactoryEvent: Sendable {
    case stageStarted(Stage, actions: Int)
    case actionStarted(PlanAction)
    case actionFinished(ActionResult)
    case stageFinished(Stage, succeeded: Int, failed: Int, skipped: Int)
    case note(String)
    /// The run starts with this plan: after the lock is held and the inventory checked again
    /// (`revised` when the cloud had changed and the plan was made again), or at once when there
    /// is nothing to do. A refused run (a busy factory, a stale plan) never starts.
    case runStarted(Plan, revised: Bool)
    /// A secret the run made (a VM password): CI renderers register it for masking, never print it elsewhere.
    case secret(String)
}

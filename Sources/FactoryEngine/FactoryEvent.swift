import FactoryModel
import Foundation

/// A run's events, for progress displays and logs (the library never prints).
public enum FactoryEvent: Sendable {
    case stageStarted(Stage, actions: Int)
    case actionStarted(PlanAction)
    case actionFinished(ActionResult)
    case stageFinished(Stage, succeeded: Int, failed: Int, skipped: Int)
    case note(String)
    /// The inventory changed between planning and taking the lock: this plan runs instead.
    case planRevised(Plan)
    /// A secret the run made (a VM password): CI renderers register it for masking, never print it elsewhere.
    case secret(String)
}

import Foundation

/// Who is asking: the job an operation belongs to, so backends can attribute requests in
/// their logs (the local cloud's operations log uses it to show jobs in flight).
public enum OperationContext {
    @TaskLocal public static var jobID: String?
    @TaskLocal public static var runID: String?
}

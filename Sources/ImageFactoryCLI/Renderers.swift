import FactoryEngine
import FactoryReports
import FactoryModel
import Foundation

/// The human view of a plan: grouped by stage and lab, with counts and reasons.
enum PlanRenderer {
    static func print(_ plan: Plan) {
        Console.out("Plan at commit \(plan.commit ?? "worktree") (inventory \(plan.inventoryFingerprint.prefix(12))), factory lab \(plan.factoryLab)")
        if let scope = (plan.scope ?? .whole).consoleLabel { Console.out("For \(scope)") }
        if let shard = plan.scope?.shard, !shard.targets.isEmpty { Console.out("  owns \(shard.labels.joined(separator: ", "))") }
        if plan.actions.isEmpty { Console.out("  Nothing to do: every lab is up to date.") }
        for stage in Stage.allCases {
            let actions = plan.actions(in: stage)
            guard !actions.isEmpty else { continue }
            Console.out("\n\(stage.rawValue) (\(actions.count)):")
            let byLab = Dictionary(grouping: actions) { $0.lab ?? "-" }
            for lab in byLab.keys.sorted() {
                Console.out("  \(lab):")
                for a in byLab[lab]! {
                    let what = [a.imageName ?? a.vmName ?? a.resource?.split(separator: "\n").first.map(String.init), a.imagePath.map { "[\($0)]" }]
                        .compactMap { $0 }.joined(separator: " ")
                    Console.out("    \(a.kind.rawValue) \(what): \(a.reason)")
                }
            }
        }
        let distribute = plan.actions(in: .distribute)
        let cross = distribute.filter { $0.crossRegion == true }.count
        Console.out("\n\(plan.actions.count) action\(plan.actions.count == 1 ? "" : "s"): " + Stage.allCases.map { "\(plan.actions(in: $0).count) \($0.rawValue)" }.joined(separator: ", ")
                    + (cross > 0 ? "; \(cross) cross-region cop\(cross == 1 ? "y" : "ies")" : ""))
        if !plan.diagnostics.isEmpty {
            Console.out("")
            DiagnosticRenderer.printText(plan.diagnostics, to: Console.out)
        }
    }
}

/// The end-of-run summary: what failed, with the resource and the cloud's message.
enum SummaryRenderer {
    /// The summary, ending with the run's one result: the same word the JSON report, the Markdown
    /// summary and Azure DevOps' task result use.
    static func print(_ summary: RunSummary, result: RunReport.Result, shard: RunReport.Shard? = nil, to out: (String) -> Void = Console.out) {
        let ok = summary.results.filter { $0.outcome == .succeeded }.count
        let skipped = summary.results.filter { $0.outcome == .skipped }.count
        let of = shard.map { " (shard \($0.index)/\($0.count))" } ?? ""
        out("\nSummary of run \(summary.runID)\(of): \(ok) succeeded, \(summary.failed.count) failed, \(skipped) skipped")
        if let shard {
            out("Shard \(shard.index)/\(shard.count) owns \(shard.targets.isEmpty ? "no target" : shard.targets.joined(separator: ", "))"
                + (shard.subscriptions.isEmpty ? "" : " in \(shard.subscriptions.count) subscription\(shard.subscriptions.count == 1 ? "" : "s")") + ".")
        }
        for r in summary.failed {
            out("  FAILED \(r.action.kind.rawValue) \(r.action.id)\(r.action.lab.map { " in \($0)" } ?? ""): \(r.message ?? "")")
        }
        for r in summary.results where r.outcome == .skipped {
            out("  skipped \(r.action.id): \(r.message ?? "")")
        }
        // Errors, warnings and notes (a VM the factory does not know, actions left out): reported, never hidden.
        if !summary.diagnostics.isEmpty { DiagnosticRenderer.printText(summary.diagnostics, to: out) }
        let warnings = summary.diagnostics.warnings.count
        let withWarnings = warnings == 0 ? "" : ", \(warnings) warning\(warnings == 1 ? "" : "s")"
        switch result {
        case .succeeded: out("Result: succeeded\(withWarnings)")
        case .partiallySucceeded: out("Result: partially succeeded (exit 1)\(withWarnings)")
        case .failed: out("Result: failed (exit 1)\(withWarnings)")
        }
    }
}

import FactoryModel
import Foundation

extension FactoryPlanner {
    /// Whether an action works in one of `configuration`'s targets: a lab of its Labs.json (never
    /// the factory lab) or a gallery of its Galleries. Everything else is the factory's own work:
    /// builds, captures, the factory lab's VMs, blobs, deployments and images, VHD records, and labs
    /// that left Labs.json.
    static func isTargetAction(_ action: PlanAction, configuration: FactoryConfiguration, factory: LabID) -> Bool {
        if let lab = action.labID {
            return lab.key != factory.key && configuration.labs.contains { $0.identifies(lab) }
        }
        if let gallery = action.galleryID {
            let key = "\(gallery.subscriptionId.lowercased())/\(gallery.resourceGroup.lowercased())/\(gallery.name.lowercased())"
            return configuration.galleries.contains { $0.key == key }
        }
        return false
    }

    /// The actions a run of `scope` owns, planned from the configuration restricted to that scope.
    /// A shard keeps its targets' actions and none of the factory's; an action that depends on
    /// factory work the shard does not do (a distribution waiting for a capture the build job has
    /// not made yet) could only be skipped, so it is left out, with a warning naming the templates.
    static func scoped(_ actions: [PlanAction], to scope: RunScope, configuration: FactoryConfiguration,
                       factory: LabID) -> (actions: [PlanAction], diagnostics: [Diagnostic]) {
        guard case .shard(let shard) = scope else {
            if scope == .factory {
                return (actions.filter { !isTargetAction($0, configuration: configuration, factory: factory) }, [])
            }
            return (actions, [])
        }
        var diagnostics: [Diagnostic] = []
        if shard.targets.isEmpty {
            diagnostics.append(.note("Shard \(shard.index)/\(shard.count) owns no target: the factory has fewer subscriptions and labs than shards.",
                                     hint: "Run `imagefactory plan --shards \(shard.count)` to see the assignment."))
        }
        let byID = Dictionary(actions.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var kept = Set(actions.filter { isTargetAction($0, configuration: configuration, factory: factory) }.map(\.id))
        var waitsFor: [String: String] = [:]  // left-out action -> the factory action it waits for
        var changed = true
        while changed {
            changed = false
            for action in actions where kept.contains(action.id) {
                guard let blocker = action.dependsOn.first(where: { byID[$0] != nil && !kept.contains($0) }) else { continue }
                kept.remove(action.id)
                waitsFor[action.id] = waitsFor[blocker] ?? blocker
                changed = true
            }
        }
        if !waitsFor.isEmpty {
            let templates = Set(waitsFor.values.compactMap { byID[$0]?.imagePath }).sorted()
            let kinds = Dictionary(grouping: waitsFor.keys.compactMap { byID[$0] }, by: \.stage)
                .sorted { $0.key < $1.key }.map { "\($0.value.count) \($0.key.rawValue)" }.joined(separator: ", ")
            diagnostics.append(.warning("Shard \(shard.index)/\(shard.count) left out \(waitsFor.count) action\(waitsFor.count == 1 ? "" : "s") (\(kinds)): \(waitsFor.count == 1 ? "it waits" : "they wait") for the image\(templates.count == 1 ? "" : "s") of \(templates.joined(separator: ", ")), not captured yet; the build job captures \(templates.count == 1 ? "it" : "them").",
                                        hint: "Run the build job first (`imagefactory run --factory-only`), then this shard again; a shard never builds or captures."))
        }
        return (actions.filter { kept.contains($0.id) }, diagnostics)
    }
}

//! LAMP, layer-adaptive magnitude pruning (Lee, Park, Mo, Ahn, Shin: "Layer-adaptive sparsity
//! for the magnitude-based pruning", ICLR 2021), as an `lt` pruning plugin.
//!
//! Within each tensor, sort the surviving weights by magnitude, ascending; weight u's score is
//! `w_u² / Σ_{v ≥ u} w_v²` (its square over the sum of the squares of itself and every larger
//! survivor). Scores are comparable across layers, so global pruning by score picks per-layer
//! sparsities automatically; a layer's largest weight scores 1 and is the last to go. With a
//! per-tensor target the plugin prunes each tensor's lowest scores, which is magnitude pruning.
//! Ties: lower score first, then tensor order, then element index (lt's built-in rule).
//!
//! Build: `cargo build --release -p lt-plugin-lamp`; use: `--strategy plugin:lamp` with
//! `LT_PLUGIN_PATH=target/release`, or `--strategy plugin:target/release/liblt_plugin_lamp.so`.

use lt_plugin_abi::{Input, Strategy, Target};

/// LAMP scores of one tensor's survivors (pruned positions score +∞: never chosen again).
pub fn lamp_scores(weights: &[f32], mask: &[u8]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| mask[i] == 1).collect();
    order.sort_by(|&a, &b| weights[a].abs().total_cmp(&weights[b].abs()).then(a.cmp(&b)));
    let mut scores = vec![f64::INFINITY; weights.len()];
    let mut tail = 0f64;
    for &i in order.iter().rev() {
        let sq = (weights[i] as f64).powi(2);
        tail += sq;
        scores[i] = if tail > 0.0 { sq / tail } else { 0.0 };
    }
    scores
}

/// The strategy.
pub struct Lamp;

impl Strategy for Lamp {
    const NAME: &'static str = "lamp";
    const DESCRIPTION: &'static str =
        "layer-adaptive magnitude pruning (Lee et al. 2021): global pruning by w²/Σ(larger w²) per layer";

    fn prune(input: &Input) -> Result<Vec<Vec<u8>>, String> {
        let scores: Vec<Vec<f64>> = input.tensors.iter().map(|t| lamp_scores(t.weights, t.mask)).collect();
        let mut masks: Vec<Vec<u8>> = input.tensors.iter().map(|t| t.mask.to_vec()).collect();
        let mut prune_lowest = |candidates: Vec<(usize, usize)>, k: usize| {
            let mut c = candidates;
            c.sort_by(|&(ta, ia), &(tb, ib)| scores[ta][ia].total_cmp(&scores[tb][ib]).then((ta, ia).cmp(&(tb, ib))));
            for &(t, i) in c.iter().take(k) {
                masks[t][i] = 0;
            }
            c.len()
        };
        let survivors =
            |t: usize| input.tensors[t].mask.iter().enumerate().filter(|(_, b)| **b == 1).map(move |(i, _)| (t, i));
        match &input.target {
            Target::Total(k) => {
                let all: Vec<(usize, usize)> = (0..input.tensors.len()).flat_map(survivors).collect();
                if prune_lowest(all, *k) < *k {
                    return Err(format!("asked to prune {k} weights, fewer survive"));
                }
            }
            Target::PerTensor(ks) => {
                for (t, &k) in ks.iter().enumerate() {
                    if prune_lowest(survivors(t).collect(), k) < k {
                        return Err(format!("asked to prune {k} weights of {}, fewer survive", input.tensors[t].name));
                    }
                }
            }
        }
        Ok(masks)
    }
}

lt_plugin_abi::export_strategy!(Lamp);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use lt_plugin_abi::Tensor;

    use super::*;

    #[test]
    fn scores_follow_the_paper() {
        let s = lamp_scores(&[1.0, -3.0, 2.0, 5.0], &[1, 1, 1, 0]);
        // Survivors by magnitude: 1, 2, 3 (squares 1, 4, 9).
        assert!((s[0] - 1.0 / 14.0).abs() < 1e-12);
        assert!((s[2] - 4.0 / 13.0).abs() < 1e-12);
        assert!((s[1] - 1.0).abs() < 1e-12);
        assert_eq!(s[3], f64::INFINITY);
    }

    #[test]
    fn global_pruning_adapts_per_layer_and_keeps_each_layers_largest_weight() {
        // A layer of large weights and a layer of small ones: global magnitude pruning would empty
        // the small layer; LAMP keeps its largest weight (score 1).
        let big = [10.0, 11.0, 12.0, 13.0];
        let small = [0.1, 0.2, 0.3, 0.4];
        let ones = [1u8; 4];
        let input = Input {
            tensors: vec![
                Tensor { name: "a", shape: &[4], weights: &big, grads: None, mask: &ones },
                Tensor { name: "b", shape: &[4], weights: &small, grads: None, mask: &ones },
            ],
            target: Target::Total(6),
            seed: 0,
            params: "{}",
        };
        let masks = Lamp::prune(&input).unwrap();
        assert_eq!(
            masks[0].iter().map(|&b| b as usize).sum::<usize>() + masks[1].iter().map(|&b| b as usize).sum::<usize>(),
            2
        );
        assert_eq!(masks[0], [0, 0, 0, 1]);
        assert_eq!(masks[1], [0, 0, 0, 1]);
    }

    #[test]
    fn per_tensor_targets_and_impossible_requests() {
        let w = [3.0, 1.0, 2.0];
        let input = Input {
            tensors: vec![Tensor { name: "a", shape: &[3], weights: &w, grads: None, mask: &[1, 1, 0] }],
            target: Target::PerTensor(vec![1]),
            seed: 0,
            params: "{}",
        };
        assert_eq!(Lamp::prune(&input).unwrap(), [vec![1, 0, 0]]);
        let too_many = Input { target: Target::PerTensor(vec![3]), ..input };
        assert!(Lamp::prune(&too_many).unwrap_err().contains("fewer survive"));
    }
}

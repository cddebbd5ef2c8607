"""Our results beside the claims of Mandal & Guo, Papernot et al., Carlini & Wagner and Croce &
Hein: one module per paper, `report` to check them all and write the Markdown.

Each `Claim` sets what a paper says (its sentence and section quoted, `Claim.quote`) beside
what our results show, with the estimate's confidence interval, the number of observations it
rests on, the test applied and a verdict (`keras_takd.core.statistics`):

* "agrees": the interval lies wholly on the side the paper claims (for a mean: the test of
  the mean, Holm-adjusted over the claim's family, rejects 0 and the mean lies on that side);
* "disagrees": it lies wholly on the other side (or beyond a bound the paper states);
* "inconclusive": anything else, including a claim whose data carry no interval;
* "no data": the columns or rows it needs are missing (e.g. no multi-step chain was run);
* "not tested on this dataset": the paper makes the claim about a dataset the results lack.

Robustness claims need the per-image table of the evaluation (`per_image.csv`, read by
`keras_takd.takd.analysis.tables`): models are compared image by image on the same
images, those that both models classify correctly and both attacks fool (the paired
difference of the minimal perturbations, a bootstrap interval resampling images, the paired
t-test of the mean, Holm-adjusted over the temperatures, and the Wilcoxon p-value as a
secondary figure). Without it a robustness claim is "inconclusive", its numbers given
without interval.
Accuracy-type claims rest on proportions of `metric_images` test images (Wilson intervals);
differences between models are paired on the test images where the evaluation kept each
model's predictions (`predictions.csv`: exact McNemar test, Holm over the claim's pairs, a
bootstrap interval resampling images), else unpaired (Wald), which the claim says.

The claims (Mandal & Guo sections V-VI unless noted), per dataset:

1. Baseline accuracy of the T = 1 teacher (99.38% MNIST, 77.72% CIFAR-10), within
   `BASELINE_TOLERANCE`.
2. Accuracy varies little with distillation: |distilled - teacher at the same T| <= 0.15%
   (MNIST), 1.2% (CIFAR-10), for every distilled model.
3. Accuracy decreases with T: the highest T's accuracy below the lowest T's, every role.
4. At a fixed T the distilled models are more accurate "in most cases".
5. Higher T makes more input gradients vanish (Fig. 4), for the gradient of the sum of logits
   (the authors' code) and of the T = 1 softmax (Papernot's): the teachers' fraction of images
   with sensitivity < 1e-10 is higher at the highest T than at the lowest.
6. Robustness (the minimal perturbation) increases with T, per attack (V-C): the mean
   perturbation at the highest T minus at the lowest, paired on images, above 0 for every
   role (paired t, Holm over the roles).
7. The teacher assistant makes distillation more robust (the paper's central claim, V-C), as
   worded: "on average" (the mean over images) the student is more robust than the teacher
   and than the assistant "in most cases" (at more than half the temperatures, each
   comparison's temperatures one Holm family; both comparisons must agree). As detail, each
   of student - assistant, assistant - teacher and student - teacher pooled over T (each
   image's mean difference over the temperatures) and at each T.
8. Confidence shows no concrete trend over T (Fig. 6, a figure of the CIFAR-10 models): "not
   tested on this dataset" on other datasets; on CIFAR-10 it cannot be decided without
   per-image confidences, reported as inconclusive with Spearman's rho of the means.
9. Multi-step (section VI): accuracy varies little with the step (bound of 2), and robustness
   rises with the step (the mean of last step - teacher > 0 at each T, Holm over the T).
10. Papernot et al. (arXiv:1511.04508): distillation at high T cuts the adversarial success rate
    (95.89% -> 0.45%). Ours: C&W L2 success within the L2 budget, T = 1 teacher vs the
    highest-T student, on the same images; agrees if it falls by more than half.
11. Carlini & Wagner (arXiv:1608.04644): distillation does not stop their attacks: the L2 attack
    on the logits succeeds on >= 95% of images of every model; and the same attack against
    softmax(logits / T) (the gradient-masking check) succeeds less often at the highest T.
12. Croce & Hein (arXiv:2003.01690), when the evaluation ran APGD-CE and APGD-DLR at the same
    eps: cross-entropy attacks underrate a distilled model and the logit-scale-invariant DLR
    loss does not, so at the highest T APGD-DLR fools more images than APGD-CE, every stage,
    on the same images (McNemar).

Modules: `common` (the `Claim` row, the `Context` of a dataset, formatting, the measure
gate), `mandal_guo` (claims 1-9 on one trained chain per (T, stage)), `seed_level` (claims
1-9 over several seeds), `mandal_guo_paper` (the paper's numbers, sentences and compared
models, which both share), `papernot` (10), `carlini_wagner` (11), `croce_hein` (12) and `report`
(`check_claims`, `to_markdown`, `numbers_markdown`, `render`). The command line is
`python -m keras_takd.takd.claims` (it prints these tables as Markdown).
"""

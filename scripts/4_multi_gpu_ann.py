"""Lesson 4: a large MLP on several GPUs (or CPU processes, or machines), with the same script everywhere.

Lesson 3 trained on one device. Here `accelerate launch` starts one process per GPU (or several CPU
processes, or processes on several machines) and accelerate wraps the model in PyTorch's
DistributedDataParallel (DDP): every process holds a copy of the model, trains on its own shard of the
rows, and the gradients are averaged across processes before every optimizer step, so the copies stay
identical. What this lesson adds:

- each process reads its own shard of the table from disk: every global batch (`--batch-size` rows per
  process, times the number of processes) is split between the processes, no row is read twice in an
  epoch and none is skipped (`wideann.data.ShardedBatches`, rank and world size from the accelerator);
- batches delivered on the device: read ahead into a few reusable pinned buffers and copied to the GPU on
  a side stream, so that the copy overlaps the compute; or, when the rows fit in GPU memory, held there
  once and gathered by index (the resident tier, `--data-tier`, `--resident-budget`); the lesson prints
  which tier it uses and why;
- bf16 mixed precision on GPUs that have it (`--mixed-precision`; full float32 on CPUs);
- the same initial weights on every process, then random numbers of its own on each, so that the processes
  do not all draw the same dropout masks;
- gradient accumulation (`--grad-accum N`): N batches per optimizer step, for a global batch larger than
  memory allows; the processes only exchange gradients on the last of the N;
- the loss summed over the rows and divided by the nominal batch size, so that a short last batch (or an
  empty one on some process) weighs exactly its rows, and results do not depend on the process count;
- validation and test predictions made by every process on its shard and gathered across processes;
- a throughput report in samples per second;
- the training loss added up on the GPU and read on the host only when it is shown (the progress bar, the
  epoch's line, a tracker's every `--log-every` steps): `loss.item()` at every step would make the host
  wait for the GPU, and the GPU for the host, at every step;
- what a wide table needs (thousands of inputs, few of which matter): the inputs centered to [-1, 1] and a
  lasso on the first layer (`--lasso`: after every step its weights move towards 0 and stop there), which
  keeps the weights of the inputs that do not matter at or near 0. Without them the network learned no
  more than a linear model on 2,000 columns and nothing on 12,849 (`scripts/README.md` has the numbers);
- a batch size chosen from the table when `--batch-size` is left out: 256 rows per process, halved while
  an epoch would have fewer than 100 optimizer steps (64 on the shipped example), and printed.

On the example data it trains a wider network (`--hidden 1024 256`); on the reference table with
12,849 columns this is the 12,848 -> 1024 -> 256 -> 1 MLP.

Lines marked `# New:` are additions to lesson 3, lines marked `# Changed:` replace lesson 3's lines.

Removed from lesson 3:
    - the `optimizer.zero_grad()` before every backward pass (with accumulation the gradients are added up
      over several batches and cleared after the optimizer step).
    - `nn.MSELoss()`'s mean over the batch (replaced by a sum divided by the nominal batch size).

Run it:
    accelerate launch scripts/4_multi_gpu_ann.py                                      # 1 process
    accelerate launch --config_file scripts/configs/cpu_2proc.yaml scripts/4_multi_gpu_ann.py  # 2 CPU processes
    accelerate launch --config_file scripts/configs/4gpu.yaml scripts/4_multi_gpu_ann.py \
        --data big_table.npy --batch-size 256 --grad-accum 2                                # 4 GPUs, bf16
    accelerate launch --config_file scripts/configs/multinode.yaml --machine_rank R scripts/4_multi_gpu_ann.py
"""
from wideann.interrupts import at_the_top_of_a_lesson; at_the_top_of_a_lesson()  # first: Ctrl-C is one line from here

import contextlib  # New
import itertools
import math  # New
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from wideann import course, data, defaults, metrics, plots, progress


# the network as a class, so that its depth and width are parameters
class MLP(nn.Module):
    """A multilayer perceptron: Linear + LayerNorm + ReLU + Dropout per hidden layer, then a Linear to y."""
    def __init__(self, n_inputs, hidden, dropout=0.0):
        super().__init__()
        layers, width = [], n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
    def forward(self, x):
        return self.net(2 * x - 1)  # Changed: inputs centered, from [0, 1] to [-1, 1] (why: the lasso below)


# New: the lasso step: every weight moves `amount` towards 0 and stops at 0 (the proximal step of an L1 penalty)
@torch.no_grad()
def shrink_towards_zero(weight, amount):
    weight.copy_(weight.sign() * (weight.abs() - amount).clamp(min=0))


# Changed: every process predicts its shard of the rows; the pieces are gathered, in row order, on every process
@torch.no_grad()
def predict(model, batches, accelerator):
    model.eval()
    truth, predictions = [], []
    for x, y in batches.epoch(0):
        truth.append(y[:, 0].float())
        predictions.append(model(x.to(accelerator.device, non_blocking=True)).float().cpu()[:, 0])
    pieces = [torch.from_numpy(batches.shard(0)), torch.cat(truth), torch.cat(predictions)]
    pieces = accelerator.pad_across_processes([p.to(accelerator.device) for p in pieces], pad_index=-1)
    rows, truth, predictions = (accelerator.gather(p).cpu() for p in pieces)
    order = torch.argsort(rows[rows >= 0])  # drop the padding, back to row order
    return truth[rows >= 0][order, None], predictions[rows >= 0][order, None]


# where training stands; saved with every checkpoint, so that --resume continues exactly
class TrainingState:
    OWN = ("loss_sum", "rows", "rows_trained")  # New: each process has its own (its rows, its loss)
    def __init__(self, accelerator):  # Changed: the accelerator, for what each process has of its own
        self.epoch, self.step, self.global_step = 1, 0, 0   # the next epoch and step to run
        self.loss_sum, self.rows = 0.0, 0                   # the running training loss of this epoch
        self.best_val_loss, self.best_epoch, self.bad_epochs = float("inf"), 0, 0
        self.history = []
        # the whole run's totals, for its throughput: they go on from the checkpoint after a resume
        self.rows_trained, self.train_seconds, self.steps_seconds = 0, 0.0, 0.0
        self.accelerator, self.per_process = accelerator, []  # New
    # New: the checkpoint is written by the main process alone, so before each one every process's own
    # numbers are gathered into the state (one row a process); a resumed process takes its row back
    def gather_own(self):
        own = torch.tensor([[float(getattr(self, k)) for k in self.OWN]], dtype=torch.float64,
                           device=self.accelerator.device)
        self.per_process = self.accelerator.gather(own).tolist()
    def state_dict(self):
        # Changed: the running loss is added up on the device (see the loop): saved as a number
        return {k: v.item() if torch.is_tensor(v) else v for k, v in vars(self).items() if k != "accelerator"}
    def load_state_dict(self, state):
        vars(self).update(state)
        # New: this process's own numbers (a checkpoint of lesson 4 before 2026-11-27 has the main one's only)
        if self.per_process:
            own = self.per_process[self.accelerator.process_index]
            self.loss_sum, self.rows, self.rows_trained = own[0], int(own[1]), int(own[2])


def main():
    # ---- 1. Options and the device ----------------------------------------------------------------
    parser = course.parser(__doc__, "4_multi_gpu_ann", epochs=None, batch_size=None, lr=1e-3,  # Changed
                           several_processes=True)
    parser.add_argument("--hidden", type=course.positive_int, nargs="+", default=[1024, 256],  # Changed: a large MLP
                        help="neurons in each hidden layer (one number per layer)")
    course.add_tracking_options(parser)
    # the options of a long run
    parser.add_argument("--dropout", type=course.probability, help="dropout probability after each hidden layer; "
                        + defaults.help_text("dropout"))
    parser.add_argument("--max-steps", type=course.non_negative_int, default=0,
                        help="stop after this many steps (0: no limit)")
    parser.add_argument("--patience", type=course.positive_int, help="stop when the validation loss has not "
                        "improved for this many epochs (counted once the learning rate has peaked); "
                        + defaults.help_text("patience"))
    parser.add_argument("--checkpoint-every", type=course.positive_int, default=500,
                        help="save a checkpoint every N steps")
    parser.add_argument("--resume", nargs="?", const="latest",
                        help="continue from a checkpoint folder (default: the newest in OUTPUT_DIR/checkpoints)")
    # New: the options of several devices
    parser.add_argument("--grad-accum", type=course.positive_int, default=1,
                        help="batches per optimizer step (gradient accumulation)")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                        help="default: the launcher's setting, else bf16 on a GPU that has it, else no")
    parser.add_argument("--data-tier", choices=["auto", "stream", "resident"], default="auto",
                        help="auto: the rows held in GPU memory when they fit --resident-budget, else streamed from "
                        "disk; stream: always stream; resident: always hold them (on a CPU: in host memory)")
    parser.add_argument("--resident-budget", type=course.positive_float, metavar="GIB",
                        help="device memory the held rows may take (default: half of the device's free memory)")
    # New: the option of wide tables: how hard the lasso pulls the weights of the inputs towards 0
    parser.add_argument("--lasso", type=course.non_negative_float, default=0.1,
                        help="after every step, the first layer's weights move LASSO x the learning rate towards 0 "
                        "(an L1 penalty; 0: off)")

    args = parser.parse_args()
    # Changed: cpu=True without GPUs, so that several CPU processes train together (gloo) instead of each
    # believing it is alone; the scheduler steps once per optimizer step, whatever the number of processes
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision=course.mixed_precision(args.mixed_precision),
                              step_scheduler_with_optimizer=False,
                              log_with=args.log_with, project_dir=args.output_dir)
    torch.manual_seed(args.seed)  # the same seed gives the same initial weights and the same run
    accelerator.print(f"device: {accelerator.device} x {accelerator.num_processes} process(es), "  # Changed
                      f"mixed precision: {accelerator.mixed_precision}")
    out_dir = Path(args.output_dir)  # the run folder (model, predictions)

    # ---- 2. The data ------------------------------------------------------------------------------
    # The table stays on disk; batches of rows are read from it while the model trains.
    files = course.prepare_data(args, accelerator)
    table = data.open_table(files.train)
    split = data.split_rows(table.n_rows, test_fraction=0.0 if files.test else 0.2, val_fraction=0.1,
                            seed=args.seed)
    test_table = data.open_table(files.test) if files.test else table
    test_rows = np.arange(test_table.n_rows) if files.test else split.test
    n_inputs = table.n_inputs
    accelerator.print(f"table: {table.n_rows} rows, {n_inputs} inputs -> {len(split.train)} training rows, "
                      f"{len(split.val)} validation rows, {len(test_rows)} test rows "
                      f"({table.n_rows * table.row_bytes / 2**20:.1f} MiB on disk, read in batches)")
    # the validation and test rows read once, before training, to check that they hold numbers: a nan or inf (in
    # a table made by hand) would make every validation loss nan, or stop the run at its test after all its training
    course.check_finite(accelerator, (table, split.val), (test_table, test_rows))
    # the options left out that depend on the size of the table: a small one needs more epochs and patience
    for line in defaults.choose(args, n_train=len(split.train), processes=accelerator.num_processes):  # Changed
        accelerator.print(line)

    # every epoch a new seeded order of the training rows, read ahead on a background thread
    # Changed: each process reads its own shard, and the batches arrive on its device: through reusable pinned
    # buffers and a copy on a side stream (streamed), or, when the rows fit in device memory, held there
    # and gathered by index (resident). Any training row can reach any process in some epoch: each holds them all.
    # Under mixed precision the batches keep the table's dtype (float16 stays float16 on the device): autocast
    # converts the inputs for the first layer anyway, and a float32 copy first would move twice the bytes. The
    # test's batches are float32 whatever the precision: the test runs in full precision (section 5).
    tier = data.device_tier(table, [split.train, split.val], accelerator.device, args.data_tier, args.resident_budget)
    accelerator.print(f"data tier: {tier.name}: {tier.reason}")
    shard = dict(rank=accelerator.process_index, world_size=accelerator.num_processes, device=accelerator.device,
                 dtype=None if accelerator.mixed_precision != "no" else torch.float32)
    train_batches = data.ShardedBatches(table, split.train, args.batch_size, seed=args.seed, **shard,
                                        prefetch=4, resident=tier.store)
    val_batches = data.ShardedBatches(table, split.val, 1024, shuffle=False, **shard, resident=tier.store)
    test_batches = data.ShardedBatches(test_table, test_rows, 1024, shuffle=False, **dict(shard, dtype=torch.float32))
    global_batch = args.batch_size * accelerator.num_processes * args.grad_accum  # New
    accelerator.print(f"global batch: {args.batch_size} rows x {accelerator.num_processes} process(es) x "  # New
                      f"{args.grad_accum} accumulated = {global_batch} rows")

    # ---- 3. The model -----------------------------------------------------------------------------
    # Inputs -> hidden layers -> y.
    model = MLP(n_inputs, args.hidden, args.dropout)
    # New: the same initial weights on every process (the seed above), then random numbers of its own on each
    # (dropout): with one seed everywhere, row k of every process's batch would get the same dropout mask
    torch.manual_seed((args.seed + accelerator.process_index) % 2**64)  # (a seed is below 2**64)

    loss_fn = nn.MSELoss(reduction="sum")  # Changed: summed squared errors (divided below)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # the learning rate rises for the first 30% of the steps, then falls towards zero; a run of under 10 steps
    # (a smoke test) keeps --lr: a cycle of 1 or 2 steps would train at about 0 (its last step is at --lr / 250,000)
    total_steps = args.epochs * math.ceil(len(train_batches) / args.grad_accum)  # Changed: optimizer steps
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    # the warm-up, the share of the steps in which the rate rises (OneCycleLR's pct_start): early stopping counts
    # no epoch that ends before the rate's peak, where the large steps make the validation loss jump
    warmup = 0.3
    warmup_steps = int(warmup * total_steps) if total_steps >= 10 else 0  # (a constant rate has no warm-up)
    if total_steps >= 10:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total_steps,
                                                        pct_start=warmup)
    else:
        accelerator.print(f"too few steps ({total_steps}) for a one-cycle schedule: "
                          f"the learning rate stays {args.lr:g}")
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)

    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    first_layer = accelerator.unwrap_model(model).net[0]  # New: the weights of the inputs, for the lasso
    accelerator.print(model)

    # resume from a checkpoint: weights, optimizer, schedule, random numbers and TrainingState
    state = TrainingState(accelerator)  # Changed
    accelerator.register_for_checkpointing(state)
    # each checkpoint keeps the best model of its time and the options (a resume with others is refused)
    checkpoints = course.Checkpoints(out_dir / "checkpoints", args, files=[out_dir / "best_model.pt"])
    if args.resume:
        path = checkpoints.load(accelerator, args.resume)  # accelerator.load_state, every file weights-only
        accelerator.print(f"resumed from {course.shell_path(path)}: epoch {state.epoch}, step {state.step}")
    # the run starts, after a resume: a new run first lists the checkpoints an earlier one left (--resume
    # alone no longer takes them), then removes its results and curves; a resumed run goes on with its own (its
    # curves continue from its checkpoint's step)
    if not args.resume:
        checkpoints.start_new_run(accelerator)
        course.clear_results(out_dir, accelerator, curves=out_dir / "4_multi_gpu_ann")  # Changed: lesson name
    accelerator.init_trackers("4_multi_gpu_ann", config=course.tracker_config(args),  # Changed: lesson name
                              init_kwargs=course.tracker_kwargs(first_step=state.global_step + 1))

    # ---- 4. Training ------------------------------------------------------------------------------
    start = time.perf_counter() - state.train_seconds
    for epoch in range(state.epoch, args.epochs + 1):
        # stop early, or at the step limit; checked first, so that a resumed run that had stopped stays stopped
        if state.bad_epochs >= args.patience:
            accelerator.print(f"early stop: no improvement for {args.patience} epochs")
            break
        # (a run resumed inside the epoch where it reached the limit (step > 0) first ends that epoch below)
        if args.max_steps and state.global_step == args.max_steps and state.step == 0:
            accelerator.print(f"reached --max-steps {args.max_steps}")
            break

        model.train()
        epoch_start = time.perf_counter()
        steps_start = time.perf_counter()
        # the steps left in this epoch: all of them from the resumed step, or up to the step limit (islice stops
        # before it asks for the batch after the last one: one read too many would count in the epoch's rows per second)
        steps = len(train_batches) - state.step
        if args.max_steps:
            steps = min(steps, (args.max_steps - state.global_step) * args.grad_accum)  # Changed: batches per step
        epoch_end = state.step + steps  # the step that ends this epoch

        batches = progress.bar(itertools.islice(train_batches.epoch(epoch, start_step=state.step), steps),
                               f"epoch {epoch}", args.quiet, accelerator, total=len(train_batches),
                               initial=state.step)  # batches read from disk, from the resumed step
        for x, y in batches:
            x, y = x.to(accelerator.device, non_blocking=True), y.to(accelerator.device, non_blocking=True)  # Changed
            # New: gradient accumulation: the optimizer steps after every grad_accum batches (and after the last
            # batch of the epoch); on the batches before, no_sync skips the exchange of gradients between processes
            state.step += 1
            sync = state.step % args.grad_accum == 0 or state.step == len(train_batches)
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                prediction = model(x)                # forward pass
                # Changed: the sum of squared errors over the nominal batch size: every row weighs the same even
                # when a batch is short, and DDP's average over processes gives the same gradient as one process
                loss = loss_fn(prediction, y) / (args.batch_size * args.grad_accum)
                accelerator.backward(loss)           # backward pass: gradients of the loss (loss.backward())
            # Changed: summed squared errors, added up on the device (in float64, as a Python float would):
            # loss.item() would make the host wait for the GPU at every step, and the GPU would idle while the host
            # prepares the next
            state.loss_sum = state.loss_sum + loss.detach().double() * (args.batch_size * args.grad_accum)
            state.rows += len(x)  # Changed
            state.rows_trained += len(x)  # Changed
            # Changed: on every batch, accumulated or not; a function, read only when the bar is redrawn
            batches.show_loss(lambda: float(state.loss_sum) / max(state.rows, 1))
            if not sync:  # New
                continue  # New
            optimizer.step()                     # move the weights a little against the gradients
            # New: the lasso: the weights of the inputs shrink by lasso x the learning rate; those of inputs that do
            # not help predict y stay at or near 0 (with thousands of inputs, their noise would drown the signal)
            shrink_towards_zero(first_layer.weight, args.lasso * optimizer.param_groups[0]["lr"])

            # the schedule sets the learning rate of the next step; the state counts steps and rows
            scheduler.step()
            optimizer.zero_grad()  # New: clear the gradients added up since the last step
            state.global_step += 1  # Changed

            # the loss and the learning rate to the experiment trackers, every --log-every steps
            if (args.log_with  # Changed: only with a tracker (.item() waits for the GPU)
                    and state.global_step % args.log_every == 0):
                step_loss = loss.item() * args.grad_accum  # New: the batch's mean squared error
                accelerator.log({"train/loss": step_loss, "train/lr": scheduler.get_last_lr()[0]},  # Changed
                                step=state.global_step)
            # checkpoints (not at the epoch's last step: the epoch's own follows; from one taken between its last
            # step and its end, a resumed run would log the epoch a second time)
            if state.global_step % args.checkpoint_every == 0 and state.step < epoch_end:
                # the steps' clock (time in the training steps alone) stops for the checkpoint
                state.steps_seconds += time.perf_counter() - steps_start
                state.train_seconds = time.perf_counter() - start
                state.gather_own()  # New
                checkpoints.save(accelerator, state.global_step)
                steps_start = time.perf_counter()
        state.steps_seconds += time.perf_counter() - steps_start

        # Changed: the training loss and throughput summed over all processes
        totals = accelerator.reduce(torch.tensor([float(state.loss_sum), state.rows, batches.rows], dtype=torch.float64,
                                                 device=accelerator.device), reduction="sum").tolist()
        train_loss = totals[0] / max(totals[1], 1)
        samples_per_second = totals[2] / (time.perf_counter() - epoch_start)

        # the loss on the validation rows; keep the weights of the best epoch; early stopping
        y_val, prediction = predict(model, val_batches, accelerator)  # Changed: gathered from all processes
        val_loss = ((prediction - y_val) ** 2).mean().item()  # Changed: the mean squared error
        state.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0

            course.save_model(accelerator.unwrap_model(model), out_dir / "best_model.pt", accelerator, args, files)
        elif state.global_step >= warmup_steps:
            state.bad_epochs += 1
        accelerator.print(f"epoch {epoch:3d}  training loss (MSE) {train_loss:.6f}  "
                          f"validation loss {val_loss:.6f}" + ("  *best*" if state.best_epoch == epoch else "")
                          + f"  lr {scheduler.get_last_lr()[0]:.2e}  {samples_per_second:,.0f} samples/s")  # Changed
        # the epoch's numbers to the experiment trackers
        accelerator.log({"epoch/train_loss": train_loss, "epoch/val_loss": val_loss,
                         "epoch/samples_per_second": samples_per_second, "epoch": epoch}, step=state.global_step)
        # on to the next epoch, after a checkpoint
        state.epoch, state.step, state.loss_sum, state.rows = epoch + 1, 0, 0.0, 0
        state.train_seconds = time.perf_counter() - start
        state.gather_own()  # New
        checkpoints.save(accelerator, state.global_step)
    train_seconds = time.perf_counter() - start
    # a loss that is not a number is never the best: with no best epoch there is no model to test
    if state.best_epoch == 0:
        raise course.LessonError("training diverged: the validation loss was not a number in any epoch (nan); "
                                 "lower --lr, or look for nan or inf in the training rows (a table made by hand): "
                                 "wideann.data.check_finite(table) names the first")
    # New: rows trained by each process, and the throughput of all of them together
    rows_per_process = accelerator.gather(torch.tensor([state.rows_trained], device=accelerator.device)).tolist()
    accelerator.print(f"rows trained per process: {rows_per_process}; "
                      f"{sum(rows_per_process) / train_seconds:,.0f} samples/s in all")

    # the loss curves
    if accelerator.is_main_process:  # New
        plots.loss_curve(state.history, out_dir / "loss.png", title="lesson 4: loss per epoch")  # Changed
    # a file name as bash reads it back (quoted where it holds a space, a newline, ...): see course.shell_path
    accelerator.print(f"best validation loss {state.best_val_loss:.6f} at epoch {state.best_epoch} "
                      f"-> {course.shell_path(out_dir / 'best_model.pt')}")

    # ---- 5. Test ----------------------------------------------------------------------------------
    # Predictions for rows the model never saw, compared with the truth in the original units of y.
    # the weights of the best epoch, predictions batch by batch from disk
    accelerator.wait_for_everyone()  # New: the main process has written best_model.pt
    best = torch.load(out_dir / "best_model.pt", map_location="cpu", weights_only=True)  # Changed: not all onto GPU 0
    # Changed: the model without accelerate's wrappers (DDP, and autocast under mixed precision): the test runs in
    # full precision on float32 batches, as `wideann predict` runs the saved float32 weights, so that predictions.csv
    # and the test metrics are those of the saved model (training and validation keep mixed precision: speed)
    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    model.load_state_dict(best)
    y_test, prediction = predict(model, test_batches, accelerator)  # Changed: gathered from all processes

    # the predictions in original units, by the C++ denormalizer (predictions.csv: y_true, y_pred)
    if accelerator.is_main_process:  # New
        # Changed: written by the main process only, then a plot of them
        predictions_csv = course.write_predictions(y_test, prediction, files.stats_path, out_dir / "predictions.csv")
        y_true, y_pred = np.loadtxt(predictions_csv, delimiter=",", skiprows=1, ndmin=2).T
        plots.predicted_vs_actual(y_true, y_pred, out_dir / "predicted_vs_actual.png", title="lesson 4: test set")

    result = metrics.regression(y_test, prediction, files.stats)
    final = course.write_metrics(  # Changed
        args, accelerator, lesson="4_multi_gpu_ann", **result, epochs=len(state.history),
        best_epoch=state.best_epoch, best_val_loss=state.best_val_loss,
        train_seconds=train_seconds,
        samples_per_second=sum(rows_per_process) / train_seconds,  # Changed
        train_samples_per_second=sum(rows_per_process) / max(state.steps_seconds, 1e-9),  # Changed: the steps alone
        data_tier=train_batches.tier, table_dtype=str(table.dtype),
        world_size=accelerator.num_processes,
        # New: what the global batch was made of
        global_batch_size=global_batch,
        grad_accum=args.grad_accum, mixed_precision=accelerator.mixed_precision,
        train_rows_per_process=rows_per_process)
    # the final numbers to the experiment trackers; the end of the tracked run
    accelerator.log({f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float))},
                    step=state.global_step)
    accelerator.end_training()


if __name__ == "__main__":
    course.run(main)  # a mistake in the options or the data ends in one line on stderr, not a traceback

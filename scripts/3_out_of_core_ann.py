"""Lesson 3: training out of core, on a table read from disk batch by batch, with everything a long run needs.

Lessons 1 and 2 loaded the whole table into memory; that stops working when the table is larger than
memory (12,849 columns and millions of rows is hundreds of GB). Here the rows of each mini-batch are read
straight from the `.npy` file on disk (`wideann.data.ShardedBatches`, a background thread reading ahead),
so memory use does not depend on the size of the table. A long run also needs:

- normalization (`LayerNorm`) and dropout layers, which keep a deeper network trainable and less prone
  to memorizing the training rows;
- a learning-rate schedule (one cycle: warm up, then anneal) instead of one fixed rate;
- early stopping: training ends when the validation loss has not improved for `--patience` epochs,
  not counting the epochs of the schedule's warm-up (before the learning rate's peak);
- options that depend on the size of the table: left out, `--epochs`, `--patience` and `--dropout` are
  chosen from the number of training rows and printed (`wideann.defaults`): 30, 5 and none, but 100, 20
  and 0.2 on a small table (under 2,000 training rows), where an epoch is a few steps and the validation
  loss of a few dozen rows is noisy;
- checkpoints (`accelerator.save_state`) every `--checkpoint-every` steps and after every epoch, and
  `--resume` to continue an interrupted run exactly where it stopped (same batches, same random numbers);
- a predicted-vs-actual plot of the test predictions (`predicted_vs_actual.png`).

Lines marked `# New:` are additions to lesson 2, lines marked `# Changed:` replace lesson 2's lines.

Removed from lesson 2:
    - `DataLoader` and `TensorDataset`, and the table loaded into memory (`data.load_table`): batches are
      read from disk now.
    - the training loader passed to `accelerator.prepare` (our batches are moved to the device by hand).
    - the local `history` / `best_val_loss` / `best_epoch` variables and the `step` counter: they live in
      `TrainingState`, which is saved with every checkpoint.

Run it:
    accelerate launch scripts/3_out_of_core_ann.py
    accelerate launch scripts/3_out_of_core_ann.py --data big_table.npy --max-steps 2000
    accelerate launch scripts/3_out_of_core_ann.py --resume          # continue from the last checkpoint
"""
from wideann.interrupts import at_the_top_of_a_lesson; at_the_top_of_a_lesson()  # first: Ctrl-C is one line from here

import itertools  # New
import time
from pathlib import Path

import numpy as np  # New
import torch
from accelerate import Accelerator
from torch import nn

from wideann import course, data, defaults, metrics, plots, progress  # Changed: + defaults


# the network as a class, so that its depth and width are parameters
class MLP(nn.Module):
    """A multilayer perceptron: Linear + LayerNorm + ReLU + Dropout per hidden layer, then a Linear to y."""  # Changed
    def __init__(self, n_inputs, hidden, dropout=0.0):  # Changed: + dropout
        super().__init__()
        layers, width = [], n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(dropout)]  # Changed
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
    def forward(self, x):
        return self.net(x)


# Changed: the predictions of a model for all rows of a batch source (and their true values), without training
@torch.no_grad()
def predict(model, batches, device):
    model.eval()
    truth, predictions = [], []
    for x, y in batches.epoch(0):
        truth.append(y)
        predictions.append(model(x.to(device)).float().cpu())
    return torch.cat(truth), torch.cat(predictions)


# New: where training stands; saved with every checkpoint, so that --resume continues exactly
class TrainingState:
    def __init__(self):
        self.epoch, self.step, self.global_step = 1, 0, 0   # the next epoch and step to run
        self.loss_sum, self.rows = 0.0, 0                   # the running training loss of this epoch
        self.best_val_loss, self.best_epoch, self.bad_epochs = float("inf"), 0, 0
        self.history = []
        # the whole run's totals, for its throughput: they go on from the checkpoint after a resume
        self.rows_trained, self.train_seconds, self.steps_seconds = 0, 0.0, 0.0
    def state_dict(self):
        return dict(vars(self))
    def load_state_dict(self, state):
        vars(self).update(state)


def main():
    # ---- 1. Options and the device ----------------------------------------------------------------
    parser = course.parser(__doc__, "3_out_of_core_ann", epochs=None, batch_size=64, lr=2e-3)  # Changed: see below
    parser.add_argument("--hidden", type=course.positive_int, nargs="+", default=[128, 64],
                        help="neurons in each hidden layer (one number per layer)")
    course.add_tracking_options(parser)
    # New: the options of a long run
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

    args = parser.parse_args()
    accelerator = Accelerator(log_with=args.log_with, project_dir=args.output_dir)
    torch.manual_seed(args.seed)  # the same seed gives the same initial weights and the same run
    accelerator.print(f"device: {accelerator.device}")
    out_dir = Path(args.output_dir)  # the run folder (model, predictions)

    # ---- 2. The data ------------------------------------------------------------------------------
    # The table stays on disk; batches of rows are read from it while the model trains.  # Changed
    files = course.prepare_data(args, accelerator)
    table = data.open_table(files.train)  # Changed: opens the .npy file(s), reads only the headers
    split = data.split_rows(table.n_rows, test_fraction=0.0 if files.test else 0.2, val_fraction=0.1,  # Changed
                            seed=args.seed)
    test_table = data.open_table(files.test) if files.test else table  # Changed
    test_rows = np.arange(test_table.n_rows) if files.test else split.test  # New
    n_inputs = table.n_inputs  # Changed
    accelerator.print(f"table: {table.n_rows} rows, {n_inputs} inputs -> {len(split.train)} training rows, "  # Changed
                      f"{len(split.val)} validation rows, {len(test_rows)} test rows "
                      f"({table.n_rows * table.row_bytes / 2**20:.1f} MiB on disk, read in batches)")
    # New: the validation and test rows read once, before training, to check that they hold numbers: a nan or inf (in
    # a table made by hand) would make every validation loss nan, or stop the run at its test after all its training
    course.check_finite(accelerator, (table, split.val), (test_table, test_rows))
    # New: the options left out that depend on the size of the table: a small one needs more epochs and patience
    for line in defaults.choose(args, n_train=len(split.train)):
        accelerator.print(line)

    # Changed: every epoch a new seeded order of the training rows, read ahead on a background thread
    train_batches = data.ShardedBatches(table, split.train, args.batch_size, seed=args.seed)
    val_batches = data.ShardedBatches(table, split.val, 1024, shuffle=False)
    test_batches = data.ShardedBatches(test_table, test_rows, 1024, shuffle=False)

    # ---- 3. The model -----------------------------------------------------------------------------
    # Inputs -> hidden layers -> y.
    model = MLP(n_inputs, args.hidden, args.dropout)  # Changed: + dropout
    loss_fn = nn.MSELoss()  # mean squared error
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # New: the learning rate rises for the first 30% of the steps, then falls towards zero; a run of under 10 steps
    # (a smoke test) keeps --lr: a cycle of 1 or 2 steps would train at about 0 (its last step is at --lr / 250,000)
    total_steps = args.epochs * len(train_batches)
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

    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)  # Changed: + scheduler
    accelerator.print(model)

    # New: resume from a checkpoint: weights, optimizer, schedule, random numbers and TrainingState
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    # each checkpoint keeps the best model of its time and the options (a resume with others is refused)
    checkpoints = course.Checkpoints(out_dir / "checkpoints", args, files=[out_dir / "best_model.pt"])
    if args.resume:
        path = checkpoints.load(accelerator, args.resume)  # accelerator.load_state, every file weights-only
        accelerator.print(f"resumed from {course.shell_path(path)}: epoch {state.epoch}, step {state.step}")
    # Changed: the run starts, after a resume: a new run first lists the checkpoints an earlier one left (--resume
    # alone no longer takes them), then removes its results and curves; a resumed run goes on with its own (its
    # curves continue from its checkpoint's step)
    if not args.resume:
        checkpoints.start_new_run(accelerator)
        course.clear_results(out_dir, accelerator, curves=out_dir / "3_out_of_core_ann")
    accelerator.init_trackers("3_out_of_core_ann", config=course.tracker_config(args),
                              init_kwargs=course.tracker_kwargs(first_step=state.global_step + 1))

    # ---- 4. Training ------------------------------------------------------------------------------
    start = time.perf_counter() - state.train_seconds  # New: the clock goes on from the checkpoint's time
    for epoch in range(state.epoch, args.epochs + 1):  # Changed: from the resumed epoch
        # New: stop early, or at the step limit; checked first, so that a resumed run that had stopped stays stopped
        if state.bad_epochs >= args.patience:
            accelerator.print(f"early stop: no improvement for {args.patience} epochs")
            break
        # (a run resumed inside the epoch where it reached the limit (step > 0) first ends that epoch below)
        if args.max_steps and state.global_step == args.max_steps and state.step == 0:
            accelerator.print(f"reached --max-steps {args.max_steps}")
            break

        model.train()
        epoch_start = time.perf_counter()
        steps_start = time.perf_counter()  # New
        # New: the steps left in this epoch: all of them from the resumed step, or up to the step limit (islice stops
        # before it asks for the batch after the last one: one read too many would count in the epoch's rows per second)
        steps = len(train_batches) - state.step
        if args.max_steps:
            steps = min(steps, args.max_steps - state.global_step)
        epoch_end = state.step + steps  # the step that ends this epoch

        batches = progress.bar(itertools.islice(train_batches.epoch(epoch, start_step=state.step), steps),  # Changed
                               f"epoch {epoch}", args.quiet, accelerator, total=len(train_batches),
                               initial=state.step)  # batches read from disk, from the resumed step
        for x, y in batches:
            x, y = x.to(accelerator.device), y.to(accelerator.device)  # New
            prediction = model(x)                # forward pass
            loss = loss_fn(prediction, y)        # how far off the predictions are
            optimizer.zero_grad()                # forget the gradients of the previous step
            accelerator.backward(loss)           # backward pass: gradients of the loss (loss.backward())
            optimizer.step()                     # move the weights a little against the gradients
            # New: the schedule sets the learning rate of the next step; the state counts steps and rows
            scheduler.step()
            state.step, state.global_step = state.step + 1, state.global_step + 1
            state.loss_sum, state.rows = state.loss_sum + loss.item() * len(x), state.rows + len(x)
            state.rows_trained += len(x)

            batches.show_loss(state.loss_sum / max(state.rows, 1))  # Changed: the running loss, kept in the state
            # the loss and the learning rate to the experiment trackers, every --log-every steps
            if state.global_step % args.log_every == 0:  # Changed: the state counts the steps
                accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]},  # Changed
                                step=state.global_step)
            # New: checkpoints (not at the epoch's last step: the epoch's own follows; from one taken between its last
            # step and its end, a resumed run would log the epoch a second time)
            if state.global_step % args.checkpoint_every == 0 and state.step < epoch_end:
                # New: the steps' clock (time in the training steps alone) stops for the checkpoint
                state.steps_seconds += time.perf_counter() - steps_start
                state.train_seconds = time.perf_counter() - start
                checkpoints.save(accelerator, state.global_step)
                steps_start = time.perf_counter()  # New
        state.steps_seconds += time.perf_counter() - steps_start  # New

        # Changed: the loss on the validation rows; keep the weights of the best epoch; early stopping
        train_loss = state.loss_sum / max(state.rows, 1)
        samples_per_second = batches.rows / (time.perf_counter() - epoch_start)
        y_val, prediction = predict(model, val_batches, accelerator.device)
        val_loss = loss_fn(prediction, y_val).item()
        state.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0

            course.save_model(accelerator.unwrap_model(model), out_dir / "best_model.pt", accelerator, args, files)
        elif state.global_step >= warmup_steps:  # New: a bad epoch only once the rate has peaked (see warmup_steps)
            state.bad_epochs += 1  # New
        accelerator.print(f"epoch {epoch:3d}  training loss (MSE) {train_loss:.6f}  "  # Changed
                          f"validation loss {val_loss:.6f}" + ("  *best*" if state.best_epoch == epoch else "")
                          + f"  lr {scheduler.get_last_lr()[0]:.2e}")
        # the epoch's numbers to the experiment trackers
        accelerator.log({"epoch/train_loss": train_loss, "epoch/val_loss": val_loss,  # Changed: the state's step
                         "epoch/samples_per_second": samples_per_second, "epoch": epoch}, step=state.global_step)
        # New: on to the next epoch, after a checkpoint
        state.epoch, state.step, state.loss_sum, state.rows = epoch + 1, 0, 0.0, 0
        state.train_seconds = time.perf_counter() - start
        checkpoints.save(accelerator, state.global_step)
    train_seconds = time.perf_counter() - start
    # a loss that is not a number is never the best: with no best epoch there is no model to test
    if state.best_epoch == 0:  # Changed: the state
        raise course.LessonError("training diverged: the validation loss was not a number in any epoch (nan); "
                                 "lower --lr, or look for nan or inf in the training rows (a table made by hand): "
                                 "wideann.data.check_finite(table) names the first")  # Changed: not checked ahead

    # the loss curves
    plots.loss_curve(state.history, out_dir / "loss.png", title="lesson 3: loss per epoch")  # Changed: state
    # a file name as bash reads it back (quoted where it holds a space, a newline, ...): see course.shell_path
    accelerator.print(f"best validation loss {state.best_val_loss:.6f} at epoch {state.best_epoch} "  # Changed
                      f"-> {course.shell_path(out_dir / 'best_model.pt')}")

    # ---- 5. Test ----------------------------------------------------------------------------------
    # Predictions for rows the model never saw, compared with the truth in the original units of y.
    # Changed: the weights of the best epoch, predictions batch by batch from disk
    accelerator.unwrap_model(model).load_state_dict(torch.load(out_dir / "best_model.pt", weights_only=True))
    y_test, prediction = predict(model, test_batches, accelerator.device)

    # the predictions in original units, by the C++ denormalizer (predictions.csv: y_true, y_pred)
    predictions_csv = course.write_predictions(y_test, prediction, files.stats_path,  # Changed: its path, for the plot
                                               out_dir / "predictions.csv")
    # New: a plot of them
    y_true, y_pred = np.loadtxt(predictions_csv, delimiter=",", skiprows=1, ndmin=2).T
    plots.predicted_vs_actual(y_true, y_pred, out_dir / "predicted_vs_actual.png", title="lesson 3: test set")

    result = metrics.regression(y_test, prediction, files.stats)
    final = course.write_metrics(args, accelerator, lesson="3_out_of_core_ann", **result,  # Changed
                                 epochs=len(state.history),  # Changed
                                 best_epoch=state.best_epoch, best_val_loss=state.best_val_loss,  # Changed
                                 train_seconds=train_seconds,
                                 samples_per_second=state.rows_trained / train_seconds,  # Changed
                                 # the steps alone
                                 train_samples_per_second=state.rows_trained / max(state.steps_seconds, 1e-9),
                                 data_tier=train_batches.tier, table_dtype=str(table.dtype),
                                 world_size=accelerator.num_processes)
    # the final numbers to the experiment trackers; the end of the tracked run
    accelerator.log({f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float))},  # Changed
                    step=state.global_step)
    accelerator.end_training()


if __name__ == "__main__":
    course.run(main)  # a mistake in the options or the data ends in one line on stderr, not a traceback

"""Lesson 2: a deeper ANN as an `nn.Module`, with mini-batches from a `DataLoader` and a validation set.

Lesson 1's network becomes a class (`MLP`) whose depth and width are options (`--hidden 128 64` is two
hidden layers of 128 and 64 neurons). A `DataLoader` serves shuffled mini-batches. The rows are split
three ways: training rows to learn from, validation rows to watch after every epoch (the model never
learns from them, so their error shows when it starts to memorize instead of generalize), and test rows
for the final report. The weights of the epoch with the lowest validation error are kept in
`best_model.pt` and used for the test; the loss curves are drawn into `loss.png`. With `--log-with
tensorboard` (or another of accelerate's experiment trackers) the options, the losses, the learning rate
and the final numbers are logged as the run goes (`tensorboard --logdir runs`).

Lines marked `# New:` are additions to lesson 1, lines marked `# Changed:` replace lesson 1's lines.

Removed from lesson 1:
    - the hand-made mini-batches (`torch.randperm` and `split`); the `DataLoader` makes them now.
    - the `nn.Sequential` model built inline; `MLP` builds it from `--hidden`.
    - the model saved after the last epoch (`model.pt`): the best epoch's is saved instead.

Run it:
    accelerate launch scripts/2_deeper_ann.py
    accelerate launch scripts/2_deeper_ann.py --hidden 256 128 64 --epochs 60
"""
from wideann.interrupts import at_the_top_of_a_lesson; at_the_top_of_a_lesson()  # first: Ctrl-C is one line from here

import time
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset  # New: mini-batches and datasets

from wideann import course, data, metrics, plots, progress  # Changed: + plots


# New: the network as a class, so that its depth and width are parameters
class MLP(nn.Module):
    """A multilayer perceptron: Linear + ReLU per hidden layer, then one Linear to the output y."""
    def __init__(self, n_inputs, hidden):
        super().__init__()
        layers, width = [], n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
    def forward(self, x):
        return self.net(x)


# New: the predictions of a model for all rows of a loader, without training
@torch.no_grad()
def predict(model, loader, device):
    model.eval()
    return torch.cat([model(x.to(device)).cpu() for x, _ in loader])


def main():
    # ---- 1. Options and the device ----------------------------------------------------------------
    parser = course.parser(__doc__, "2_deeper_ann", epochs=30, batch_size=64, lr=2e-3)  # Changed: lesson name
    parser.add_argument("--hidden", type=course.positive_int, nargs="+", default=[128, 64],
                        help="neurons in each hidden layer (one number per layer)")  # Changed: one width per layer
    course.add_tracking_options(parser)  # New: --log-with tensorboard|wandb|mlflow|..., --log-every N
    args = parser.parse_args()
    accelerator = Accelerator(log_with=args.log_with, project_dir=args.output_dir)  # Changed: + trackers (--log-with)
    torch.manual_seed(args.seed)  # the same seed gives the same initial weights and the same run
    accelerator.print(f"device: {accelerator.device}")
    out_dir = Path(args.output_dir)  # the run folder (model, predictions)

    # ---- 2. The data ------------------------------------------------------------------------------
    # The whole table in memory as one tensor, its rows split into training, validation and test rows.  # Changed
    files = course.prepare_data(args, accelerator)
    table = torch.from_numpy(data.load_table(files.train))
    split = data.split_rows(len(table), test_fraction=0.0 if files.test else 0.2, val_fraction=0.1,  # Changed
                            seed=args.seed)
    train, val = table[split.train], table[split.val]  # Changed: + validation rows
    test = torch.from_numpy(data.load_table(files.test)) if files.test else table[split.test]
    x_train, y_train = train[:, :-1], train[:, -1:]  # inputs: every column but the last; target: the last
    x_val, y_val = val[:, :-1], val[:, -1:]  # New
    x_test, y_test = test[:, :-1], test[:, -1:]
    n_inputs = x_train.shape[1]
    accelerator.print(f"table: {len(table)} rows, {n_inputs} inputs -> {len(x_train)} training rows, "  # Changed
                      f"{len(x_val)} validation rows, {len(x_test)} test rows")

    # New: a DataLoader shuffles the training rows every epoch and cuts them into mini-batches
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(args.seed))
    val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=1024)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=1024)

    # ---- 3. The model -----------------------------------------------------------------------------
    # Inputs -> hidden layers -> y.  # Changed
    model = MLP(n_inputs, args.hidden)  # Changed: the class above
    loss_fn = nn.MSELoss()  # mean squared error
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # Changed: accelerate also prepares the training loader (its batches arrive on the device)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

    accelerator.print(model)

    # New: the run starts, its options and data checked (a run refused before this leaves the folder as it was): the
    # results and TensorBoard curves an earlier run left in the folder go (its model stays until this run saves one),
    # and the tracked run starts with the options: the folder's curves and results are always those of one run
    course.clear_results(out_dir, accelerator, curves=out_dir / "2_deeper_ann")
    accelerator.init_trackers("2_deeper_ann", config=course.tracker_config(args),
                              init_kwargs=course.tracker_kwargs(first_step=1))

    # ---- 4. Training ------------------------------------------------------------------------------
    history, best_val_loss, best_epoch = [], float("inf"), 0  # New: loss per epoch; the best epoch so far
    step = 0  # New: optimizer steps so far, the x axis of the tracked curves
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total_loss = 0.0
        epoch_start = time.perf_counter()  # New: for the throughput
        batches = progress.bar(train_loader, f"epoch {epoch}", args.quiet, accelerator)  # Changed: the DataLoader's
        for x, y in batches:  # Changed: mini-batches from the DataLoader, already on the device
            prediction = model(x)                # forward pass
            loss = loss_fn(prediction, y)        # how far off the predictions are
            optimizer.zero_grad()                # forget the gradients of the previous step
            accelerator.backward(loss)           # backward pass: gradients of the loss (loss.backward())
            optimizer.step()                     # move the weights a little against the gradients
            total_loss += loss.item() * len(x)  # Changed: len(x)
            batches.show_loss(total_loss / batches.rows)  # the running training loss of the epoch
            # New: the loss and the learning rate to the experiment trackers, every --log-every steps
            step += 1
            if step % args.log_every == 0:
                accelerator.log({"train/loss": loss.item(), "train/lr": optimizer.param_groups[0]["lr"]}, step=step)

        # New: the loss on the validation rows; keep the weights of the best epoch
        train_loss = total_loss / len(x_train)
        samples_per_second = batches.rows / (time.perf_counter() - epoch_start)
        val_loss = loss_fn(predict(model, val_loader, accelerator.device), y_val).item()
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < best_val_loss:
            best_val_loss, best_epoch = val_loss, epoch
            course.save_model(accelerator.unwrap_model(model), out_dir / "best_model.pt", accelerator, args, files)

        accelerator.print(f"epoch {epoch:3d}  training loss (MSE) {train_loss:.6f}  "  # Changed: + validation
                          f"validation loss {val_loss:.6f}" + ("  *best*" if best_epoch == epoch else ""))
        # New: the epoch's numbers to the experiment trackers
        accelerator.log({"epoch/train_loss": train_loss, "epoch/val_loss": val_loss,
                         "epoch/samples_per_second": samples_per_second, "epoch": epoch}, step=step)
    train_seconds = time.perf_counter() - start
    # New: a loss that is not a number is never the best: with no best epoch there is no model to test
    if best_epoch == 0:
        raise course.LessonError("training diverged: the validation loss was not a number in any epoch (nan); "
                                 "lower --lr")  # (a nan or inf in the table is refused as it is loaded)

    # New: the loss curves
    plots.loss_curve(history, out_dir / "loss.png", title="lesson 2: loss per epoch")
    # a file name as bash reads it back (quoted where it holds a space, a newline, ...): see course.shell_path
    accelerator.print(f"best validation loss {best_val_loss:.6f} at epoch {best_epoch} "
                      f"-> {course.shell_path(out_dir / 'best_model.pt')}")

    # ---- 5. Test ----------------------------------------------------------------------------------
    # Predictions for rows the model never saw, compared with the truth in the original units of y.
    # Changed: the weights of the best epoch, predictions batch by batch
    accelerator.unwrap_model(model).load_state_dict(torch.load(out_dir / "best_model.pt", weights_only=True))
    prediction = predict(model, test_loader, accelerator.device)

    # the predictions in original units, by the C++ denormalizer (predictions.csv: y_true, y_pred)
    course.write_predictions(y_test, prediction, files.stats_path, out_dir / "predictions.csv")
    result = metrics.regression(y_test, prediction, files.stats)
    final = course.write_metrics(args, accelerator, lesson="2_deeper_ann", **result, epochs=args.epochs,  # Changed
                                 best_epoch=best_epoch, best_val_loss=best_val_loss,  # New
                                 train_seconds=train_seconds,
                                 samples_per_second=args.epochs * len(x_train) / train_seconds,
                                 world_size=accelerator.num_processes)
    # New: the final numbers to the experiment trackers; the end of the tracked run
    accelerator.log({f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float))}, step=step)
    accelerator.end_training()


if __name__ == "__main__":
    course.run(main)  # a mistake in the options or the data ends in one line on stderr, not a traceback

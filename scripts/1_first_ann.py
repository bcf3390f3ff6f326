"""Lesson 1: a first artificial neural network (ANN), trained on one CPU.

The table is loaded into memory as PyTorch tensors and split into training rows and test rows. The
network has one hidden layer; it learns by gradient descent on the mean squared error, with the Adam
optimizer, in a training loop written out step by step. Accelerate's `Accelerator` picks the device
(CPU here, a GPU when there is one). At the end the test error is reported in the original units of y.

The table comes normalized to [0, 1] by the C++ engine (`wideann normalize`): inputs in every column
but the last, the target y in the last. On a terminal a progress bar shows each epoch's steps, rows per
second and running loss (`--quiet` hides it). The test predictions are written in original units
(`predictions.csv`), and the trained model is saved with what is needed to use it on new raw data:
`wideann predict runs/1_first_ann new.csv -o new_predictions.csv`.

Run it:
    accelerate launch scripts/1_first_ann.py
    accelerate launch scripts/1_first_ann.py --data my_table.npy --epochs 50 --hidden 128
"""
from wideann.interrupts import at_the_top_of_a_lesson; at_the_top_of_a_lesson()  # first: Ctrl-C is one line from here

import time
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from wideann import course, data, metrics, progress


def main():
    # ---- 1. Options and the device ----------------------------------------------------------------
    parser = course.parser(__doc__, "1_first_ann", epochs=30, batch_size=64, lr=2e-3)
    parser.add_argument("--hidden", type=course.positive_int, default=64, help="neurons in the hidden layer")
    args = parser.parse_args()
    accelerator = Accelerator()
    torch.manual_seed(args.seed)  # the same seed gives the same initial weights and the same run
    accelerator.print(f"device: {accelerator.device}")
    out_dir = Path(args.output_dir)  # the run folder (model, predictions)

    # ---- 2. The data ------------------------------------------------------------------------------
    # The whole table in memory as one tensor, its rows split into training rows and test rows.
    files = course.prepare_data(args, accelerator)
    table = torch.from_numpy(data.load_table(files.train))
    split = data.split_rows(len(table), test_fraction=0.0 if files.test else 0.2, seed=args.seed)
    train = table[split.train]
    test = torch.from_numpy(data.load_table(files.test)) if files.test else table[split.test]
    x_train, y_train = train[:, :-1], train[:, -1:]  # inputs: every column but the last; target: the last
    x_test, y_test = test[:, :-1], test[:, -1:]
    n_inputs = x_train.shape[1]
    accelerator.print(f"table: {len(table)} rows, {n_inputs} inputs -> {len(x_train)} training rows, "
                      f"{len(x_test)} test rows")

    # ---- 3. The model -----------------------------------------------------------------------------
    # Inputs -> one hidden layer -> y.
    model = nn.Sequential(
        nn.Linear(n_inputs, args.hidden),  # every input connected to every hidden neuron
        nn.ReLU(),                         # the non-linearity that makes it more than a linear model
        nn.Linear(args.hidden, 1),         # the hidden neurons combined into one output: y
    )
    loss_fn = nn.MSELoss()  # mean squared error
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    model, optimizer = accelerator.prepare(model, optimizer)  # moves the model to the device
    accelerator.print(model)

    # ---- 4. Training ------------------------------------------------------------------------------
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))  # a new random order of the training rows every epoch
        total_loss = 0.0
        # the shuffled rows cut into mini-batches of --batch-size rows; on a terminal, a progress bar (rows/s, loss)
        batches = progress.bar(order.split(args.batch_size), f"epoch {epoch}", args.quiet, accelerator)
        for rows in batches:  # one mini-batch of rows
            x = x_train[rows].to(accelerator.device)
            y = y_train[rows].to(accelerator.device)
            prediction = model(x)                # forward pass
            loss = loss_fn(prediction, y)        # how far off the predictions are
            optimizer.zero_grad()                # forget the gradients of the previous step
            accelerator.backward(loss)           # backward pass: gradients of the loss (loss.backward())
            optimizer.step()                     # move the weights a little against the gradients
            total_loss += loss.item() * len(rows)
            batches.show_loss(total_loss / batches.rows)  # the running training loss of the epoch
        accelerator.print(f"epoch {epoch:3d}  training loss (MSE) {total_loss / len(order):.6f}")
    train_seconds = time.perf_counter() - start
    # the trained weights, with what `wideann predict` needs beside them: model.json (the layers, the
    # options) and stats.json (the stats new data must be normalized with)
    course.save_model(model, out_dir / "model.pt", accelerator, args, files)

    # ---- 5. Test ----------------------------------------------------------------------------------
    # Predictions for rows the model never saw, compared with the truth in the original units of y.
    model.eval()
    with torch.no_grad():
        prediction = model(x_test.to(accelerator.device)).cpu()
    # the predictions in original units, by the C++ denormalizer (predictions.csv: y_true, y_pred)
    course.write_predictions(y_test, prediction, files.stats_path, out_dir / "predictions.csv")
    result = metrics.regression(y_test, prediction, files.stats)
    course.write_metrics(args, accelerator, lesson="1_first_ann", **result, epochs=args.epochs,
                         train_seconds=train_seconds,
                         samples_per_second=args.epochs * len(x_train) / train_seconds,
                         world_size=accelerator.num_processes)


if __name__ == "__main__":
    course.run(main)  # a mistake in the options or the data ends in one line on stderr, not a traceback

"""tools/embedding_scale.py: the collapse check prints one row per model, and refuses no input."""


def test_prints_the_scale_of_a_run_and_refuses_no_model(make_run, synthetic_data, tmp_path, tools):
    data = synthetic_data(num_train_ids=4, num_test_ids=6, num_cameras=2, images_per_camera=2)
    run = make_run(tmp_path / "run")
    done = tools.run("embedding_scale", f"--run={run}", "--dataset=synthetic", f"--data_dir={data}",
                     "--p=5", "--k=3")
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith(str(run)[-34:]))
    norm, d2_pos, d2_neg, hardest_pos, hardest_neg, hinge = map(float, row[34:].split()[:6])
    assert 0 < norm and 0 < d2_pos <= hardest_pos and hardest_neg <= d2_neg and hinge >= 0
    assert "5 ids x 3 images" in done.stdout

    refused = tools.run("embedding_scale", "--dataset=synthetic", f"--data_dir={data}")
    assert refused.returncode != 0 and "--run" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr

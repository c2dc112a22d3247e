"""What every room uses: typed params (config), where files live (paths), errors, atomic files,
process pools, the stage entry point, dvc.lock's guard and plots."""

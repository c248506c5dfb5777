"""Evaluation metrics: images (PSNR, SSIM, LPIPS if available), geometry and materials."""

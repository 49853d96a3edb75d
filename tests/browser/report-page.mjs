// Opens the report's index.html (from `cargo xtask reproduce-report`) in headless Chromium and
// checks that every figure loads, that each chart's SVG twin renders at the PNG's size with its
// text as text, and that nothing on the page errors. Usage:
//   node report-page.mjs REPORT_DIR SCREENSHOT.png
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import { existsSync } from "node:fs";
import path from "node:path";

const [dir, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--allow-file-access-from-files"],
});
const fail = async (message) => {
  console.error("report check FAILED: " + message);
  await browser.close();
  process.exit(1);
};
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(pathToFileURL(path.join(dir, "index.html")).href);
  await page.waitForLoadState("load");
  const images = await page.$$eval("img", (els) => els.map((e) => ({ src: e.getAttribute("src"), w: e.naturalWidth, h: e.naturalHeight, complete: e.complete })));
  if (images.length < 10) await fail(`only ${images.length} figures on the page`);
  for (const img of images) {
    if (!img.complete || img.w === 0) await fail("figure did not load: " + img.src);
  }
  // Every PNG figure has an SVG twin; load each one as the browser would and compare its size.
  let twins = 0;
  for (const img of images) {
    const svg = path.join(dir, img.src.replace(/\.png$/, ".svg"));
    if (!existsSync(svg)) await fail("no SVG twin for " + img.src);
    const svgPage = await browser.newPage();
    await svgPage.goto(pathToFileURL(svg).href);
    const box = await svgPage.$eval("svg", (s) => {
      const r = s.getBoundingClientRect();
      return { w: Math.round(r.width), h: Math.round(r.height), texts: s.querySelectorAll("text").length };
    });
    await svgPage.close();
    if (box.w !== img.w || box.h !== img.h) await fail(`${svg} renders ${box.w}x${box.h}, its PNG is ${img.w}x${img.h}`);
    if (box.texts === 0) await fail(`${svg} has no text elements`);
    twins++;
  }
  if (errors.length) await fail(errors.join("; "));
  await page.screenshot({ path: screenshot, fullPage: false });
  console.log(`report check: ${images.length} figures loaded, ${twins} SVG twins render at their PNG's size`);
  await browser.close();
} catch (e) {
  await fail(e.stack || String(e));
}

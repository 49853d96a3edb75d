// Opens fer serve's page in headless Chromium, uploads a photo as a person would (the file
// input), and checks that every face comes back boxed and labelled. Usage:
//   node serve-page.mjs URL PHOTO EXPECTED_FACES SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, photo, expected, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  // A fake camera (Chromium's test pattern) and an automatic "allow" let the webcam path run too.
  args: ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const fail = async (message) => {
  console.error("browser check FAILED: " + message);
  await browser.close();
  process.exit(1);
};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(url);
  if ((await page.title()) !== "fer: emotions in your photos") await fail("unexpected title " + (await page.title()));
  await page.setInputFiles("#file", photo);
  await page.waitForFunction((n) => document.querySelectorAll(".face-card").length === n || document.querySelector("#status.error"), Number(expected), { timeout: 120000 });
  const status = await page.textContent("#status");
  const cards = await page.$$eval(".face-card", (els) =>
    els.map((e) => ({ cls: e.dataset.class, title: e.querySelector("h3").textContent, bars: e.querySelectorAll(".bar").length, saliency: e.querySelector("img").getAttribute("src") || "" })),
  );
  if (cards.length !== Number(expected)) await fail(`expected ${expected} faces, page shows ${cards.length} (status: ${status})`);
  const classes = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];
  for (const c of cards) {
    if (!classes.includes(c.cls) || !c.title.includes(c.cls)) await fail("bad label " + JSON.stringify(c));
    if (c.bars !== 7) await fail("expected 7 probability bars, got " + c.bars);
    if (!c.saliency.startsWith("data:image/png;base64,")) await fail("no saliency overlay");
  }
  // The boxes are on the canvas: the photo's own size, and pixels of each card's class colour.
  const drawn = await page.$eval("#view", (canvas) => {
    const ctx = canvas.getContext("2d");
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = { Angry: [213, 94, 0], Disgust: [0, 158, 115], Fear: [204, 121, 167], Happy: [230, 199, 0], Sad: [0, 114, 178], Surprise: [230, 159, 0], Neutral: [140, 140, 140] };
    const counts = {};
    for (const [name, [r, g, b]] of Object.entries(colours)) {
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - r) < 3 && Math.abs(data[i + 1] - g) < 3 && Math.abs(data[i + 2] - b) < 3) n++;
      counts[name] = n;
    }
    return { width: canvas.width, height: canvas.height, counts };
  });
  for (const c of cards) if (drawn.counts[c.cls] < 100) await fail(`no ${c.cls} box on the canvas: ${JSON.stringify(drawn)}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  // The webcam: frames go to the server in a loop and each answer is drawn (the fake camera's
  // test pattern has no face, so the status line reports zero).
  await page.click("#webcam");
  await page.waitForFunction(() => /^Webcam: \d+ face/.test(document.querySelector("#status").textContent) || document.querySelector("#status.error"), null, { timeout: 60000 });
  const webcam = await page.textContent("#status");
  if (!webcam.startsWith("Webcam: ")) await fail("webcam: " + webcam);
  await page.click("#webcam");
  if (errors.length) await fail("page errors: " + errors.join("; "));
  console.log(`browser check passed: ${status} ${webcam} canvas ${drawn.width}x${drawn.height}; faces: ${cards.map((c) => c.title).join(" | ")}; screenshot ${screenshot}`);
} catch (e) {
  await fail(e.message);
}
await browser.close();

// Produces docs/screenshots/{desktop-dark,desktop-light,mobile}.png from a real run of the app
// against the server and the fake model provider (same harness as the end-to-end tests).

import fs from "node:fs";
import path from "node:path";
import { frontendDir, launchBrowser, makePdf, startStack } from "./harness.mjs";

const outDir = path.resolve(frontendDir, "../docs/screenshots");
fs.mkdirSync(outDir, { recursive: true });

const stack = await startStack();
const browser = await launchBrowser();
try {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(45_000);
  await page.goto(`${stack.baseUrl}/`);
  const idle = () =>
    page.waitForFunction(() => !document.querySelector(".msg-assistant.streaming") && !document.getElementById("send").hidden);
  const send = async (text) => {
    await page.fill("#composer-input", text);
    await page.press("#composer-input", "Enter");
    await idle();
  };
  for (const t of ["Trip_to_Lisbon", "Rust_lifetimes_explained", "Weekly_meal_plan", "Budget_spreadsheet_review"]) {
    await page.click("#new-chat");
    await send(`Hello TITLE:${t}`);
  }
  await page.click("#new-chat");
  const pdf = makePdf(["Q4 report", "ZEBRA-42 revenue grew by 17 percent in the fourth quarter."]);
  await page.setInputFiles("#file-input", { name: "q4-report.pdf", mimeType: "application/pdf", buffer: pdf });
  await page.waitForSelector("#chips .chip[data-state=ready]");
  await send("Summarize the quarterly report by region, with the growth formula.");
  await page.waitForFunction(() => document.getElementById("conv-title").textContent !== "New conversation");
  await page.mouse.move(900, 300);
  await page.waitForTimeout(1500); // let the title highlight fade
  await page.screenshot({ path: path.join(outDir, "desktop-dark.png") });

  await page.click("#theme");
  await page.mouse.move(900, 300);
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(outDir, "desktop-light.png") });
  await page.click("#theme");

  const url = page.url();
  const mobile = await browser.context.newPage();
  await mobile.setViewportSize({ width: 390, height: 844 });
  await mobile.goto(url);
  await mobile.waitForSelector(".msg-assistant .katex");
  await mobile.waitForTimeout(300);
  await mobile.screenshot({ path: path.join(outDir, "mobile.png") });
  for (const f of fs.readdirSync(outDir)) {
    console.log(`${f}: ${Math.round(fs.statSync(path.join(outDir, f)).size / 1024)} KB`);
  }
} finally {
  await browser.close();
  await stack.stop();
}
